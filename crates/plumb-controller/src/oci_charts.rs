//! Charts from OCI HelmRepositories (`type: oci`): Helm's OCI layout, where chart `<name>`
//! lives at `<url>/<name>` and each version is a tag (`+` written `_`). Used by the
//! HelmRelease chart step through [`crate::charts::resolve_chart`]; there is no index, so an
//! OCI HelmRepository holds only the URL and credentials (as in Flux, no artifact).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use plumb_api::HelmRepository;
use plumb_api::consts::{oci as oci_consts, reason};
use plumb_source::ErrorKind;
use plumb_source::oci::{self, ClientOptions, Credentials};

use crate::charts::{ResolvedChart, chart_cache};
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Registry options of an OCI HelmRepository: `insecure` (plain HTTP), `timeout`,
/// `secretRef` (a `kubernetes.io/dockerconfigjson` Secret, or `username`/`password`),
/// `certSecretRef` (`ca.crt`, `tls.crt`, `tls.key`), and `provider: aws` (ECR).
pub(crate) async fn client_options(
    repo: &HelmRepository,
    ctx: &Context,
    registry: &str,
) -> std::result::Result<ClientOptions, Failure> {
    let ns = repo.namespace().unwrap_or_default();
    let mut opts = ClientOptions {
        insecure: repo.spec.insecure,
        timeout: repo.timeout().unwrap_or(Duration::from_secs(60)),
        resolve: ctx.config.oci_resolve.clone(),
        ..ClientOptions::default()
    };
    let auth_failed = |name: &str, detail: String| {
        Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{name}': {detail}"),
        )
    };
    if let Some(r) = &repo.spec.secret_ref {
        let data = crate::secrets::secret_data(ctx, &ns, &r.name).await?;
        if data.contains_key(".dockerconfigjson") {
            opts.apply_docker_config_secret(&data, registry)
                .map_err(|e| auth_failed(&r.name, e.to_string()))?;
        } else {
            opts.credentials = Some(basic_auth(&data).map_err(|d| auth_failed(&r.name, d))?);
        }
    }
    if let Some(r) = &repo.spec.cert_secret_ref {
        let data = crate::secrets::secret_data(ctx, &ns, &r.name).await?;
        opts.apply_cert_secret(&data)
            .map_err(|e| auth_failed(&r.name, e.to_string()))?;
    }
    // As Flux: the provider (ECR for `aws`) is asked only when the secret gave nothing.
    if opts.credentials.is_none() {
        let provider = repo.spec.provider.to_string();
        opts.credentials = crate::ecr::provider_credentials(ctx, Some(&provider), registry)
            .await?
            .map(|p| p.credentials);
    }
    Ok(opts)
}

fn basic_auth(data: &BTreeMap<String, Vec<u8>>) -> Result<Credentials, String> {
    let text = |k: &str| {
        data.get(k)
            .map(|v| {
                String::from_utf8_lossy(v)
                    .trim_end_matches('\n')
                    .to_string()
            })
            .filter(|v| !v.is_empty())
    };
    match (text("username"), text("password")) {
        (Some(username), Some(password)) => Ok(Credentials { username, password }),
        _ => Err("needs '.dockerconfigjson', or both 'username' and 'password'".into()),
    }
}

/// The URL of chart `chart` in the OCI HelmRepository `repo` (`oci://host/path/<chart>`).
pub(crate) fn chart_url(repo: &HelmRepository, chart: &str) -> String {
    format!("{}/{chart}", repo.spec.url.trim_end_matches('/'))
}

fn pull_failure(repo_id: &str, e: &plumb_source::SourceError) -> Failure {
    let (class, why) = match e.kind() {
        ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Internal => {
            (Class::Transient, reason::CHART_PULL_ERROR)
        }
        ErrorKind::AuthFailed | ErrorKind::HostUntrusted => {
            (Class::Stalled, reason::AUTHENTICATION_FAILED)
        }
        ErrorKind::RefNotFound | ErrorKind::InvalidInput => {
            (Class::Stalled, reason::INVALID_CHART_REFERENCE)
        }
        ErrorKind::BadContent => (Class::Stalled, reason::CHART_PULL_ERROR),
        ErrorKind::Unverified => (Class::Stalled, reason::VERIFICATION_ERROR),
    };
    Failure::new(
        class,
        why,
        format!("chart pull error: HelmRepository '{repo_id}': {e}"),
    )
}

/// Resolves `version` (exact, range, or empty for the highest stable) of `chart` in the OCI
/// HelmRepository `repo` and downloads the chart layer (digest-verified, capped), from the
/// chart cache when it holds that digest.
pub(crate) async fn resolve_chart(
    ctx: &Context,
    (repo, repo_id): (&HelmRepository, &str),
    chart: &str,
    version: &str,
    verify: Option<Vec<plumb_source::oci::cosign::TrustedKey>>,
) -> std::result::Result<ResolvedChart, Failure> {
    let repo_id = repo_id.to_string();
    let reference = oci::parse_url(&chart_url(repo, chart)).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::URL_INVALID,
            format!("HelmRepository '{repo_id}': {e}"),
        )
    })?;
    let opts = client_options(repo, ctx, &reference.registry).await?;
    let cache = chart_cache(ctx);
    let (version_req, name) = (version.to_string(), chart.to_string());
    let id = repo_id.clone();
    tokio::task::spawn_blocking(move || {
        let client = oci::Client::new(&reference, &opts).map_err(|e| pull_failure(&id, &e))?;
        let (version, resolved) = client
            .resolve_helm_chart(&version_req)
            .map_err(|e| pull_failure(&id, &e))?;
        if let Some(keys) = &verify {
            client
                .verify_cosign(&resolved.digest, keys)
                .map_err(|e| pull_failure(&id, &e))?;
        }
        let manifest = client
            .fetch_manifest(&resolved.digest)
            .map_err(|e| pull_failure(&id, &e))?;
        let layer = oci::select_layer(
            &reference.name(),
            &manifest,
            Some(oci_consts::HELM_CHART_CONTENT_MEDIA_TYPE),
        )
        .map_err(|e| pull_failure(&id, &e))?;
        let hex = layer.digest.trim_start_matches("sha256:").to_string();
        let archive = match cache.get(&hex) {
            Ok(Some(a)) => a,
            _ => {
                let (_, data) = client
                    .fetch_layer(&manifest, Some(oci_consts::HELM_CHART_CONTENT_MEDIA_TYPE))
                    .map_err(|e| pull_failure(&id, &e))?;
                // A cache write failure only costs a later download.
                let _ = cache.put(&hex, &data);
                data
            }
        };
        Ok(ResolvedChart {
            name,
            version,
            digest: format!("sha256:{hex}"),
            archive,
        })
    })
    .await
    .map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::CHART_PULL_ERROR,
            format!("HelmRepository '{repo_id}': {e}"),
        )
    })?
}
