//! The source step: the GitRepository named by `sourceRef` gives the URL, the credentials
//! (its auth Secret and proxy Secret, read as for GitRepository) and the default checkout
//! reference; the automation adds `git.checkout.ref`, `git.commit` and `git.push`.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::git_repository::GitProvider;
use plumb_api::{GitRepository, ImageUpdateAutomation};
use plumb_source::git::push::{PushOptions, SigningKey};
use plumb_source::git::{FetchOptions, GitAuth, GitProxy, GitReference};

use super::PUSH_ATTEMPTS;
use super::reasons::INVALID_SOURCE_CONFIG;
use crate::context::Context;
use crate::outcome::{Class, Failure};

fn invalid(message: String) -> Failure {
    Failure::new(Class::Stalled, INVALID_SOURCE_CONFIG, message)
}

/// Everything the push needs but the cache directory (set by the caller).
pub(super) async fn push_options(
    obj: &ImageUpdateAutomation,
    ctx: &Context,
) -> Result<PushOptions, Failure> {
    let own_ns = obj.namespace().unwrap_or_default();
    let r = &obj.spec.source_ref;
    let ns = r.namespace.clone().unwrap_or_else(|| own_ns.clone());
    let Some(git) = &obj.spec.git else {
        return Err(invalid(
            "spec.git is required for the Setters strategy".into(),
        ));
    };
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let repo = match api.get_opt(&r.name).await {
        Ok(Some(repo)) => repo,
        Ok(None) => {
            return Err(Failure::new(
                Class::Transient,
                INVALID_SOURCE_CONFIG,
                format!("GitRepository '{ns}/{}' not found", r.name),
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                Class::Transient,
                INVALID_SOURCE_CONFIG,
                format!("getting GitRepository '{ns}/{}': {e}", r.name),
            ));
        }
    };
    if repo.spec.provider == Some(GitProvider::Github) {
        return Err(invalid(format!(
            "GitRepository '{ns}/{}': the github provider is not supported for pushing",
            r.name
        )));
    }
    let checkout = git
        .checkout
        .as_ref()
        .map(|c| c.reference.clone())
        .or(repo.spec.reference.clone())
        .unwrap_or_default();
    let signing_key = match &git.commit.signing_key {
        None => None,
        Some(k) => {
            let data = crate::secrets::secret_data(ctx, &own_ns, &k.secret_ref.name).await?;
            let text = |key: &str| {
                data.get(key)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let armored = text("git.asc").ok_or_else(|| {
                invalid(format!(
                    "signing key secret '{own_ns}/{}' has no 'git.asc'",
                    k.secret_ref.name
                ))
            })?;
            let passphrase = text("passphrase");
            Some(
                SigningKey::from_armored(&armored, passphrase.as_deref().map(str::trim)).map_err(
                    |e| invalid(format!("secret '{own_ns}/{}': {e}", k.secret_ref.name)),
                )?,
            )
        }
    };
    let push = git.push.clone().unwrap_or_default();
    Ok(PushOptions {
        fetch: FetchOptions {
            reference: GitReference {
                branch: checkout.branch,
                tag: checkout.tag,
                semver: checkout.semver,
                name: checkout.name,
                commit: checkout.commit,
            },
            timeout: repo.timeout().unwrap_or(Duration::from_secs(60)),
            ..FetchOptions::new(
                &repo.spec.url,
                auth(&repo, &ns, ctx).await?,
                Default::default(),
            )
        },
        branch: push.branch.filter(|b| !b.trim().is_empty()),
        refspec: push.refspec,
        author_name: git.commit.author.name.clone().unwrap_or_default(),
        author_email: git.commit.author.email.clone(),
        signing_key,
        attempts: PUSH_ATTEMPTS,
        push_options: plumb_source::git::push::push_option_strings(&push.options),
    })
}

/// The GitRepository's credentials and proxy.
async fn auth(repo: &GitRepository, ns: &str, ctx: &Context) -> Result<GitAuth, Failure> {
    let bad =
        |name: &str, e: plumb_source::SourceError| invalid(format!("secret '{ns}/{name}': {e}"));
    let mut auth = match &repo.spec.secret_ref {
        None => GitAuth::none(),
        Some(r) => {
            let data = crate::secrets::secret_data(ctx, ns, &r.name).await?;
            GitAuth::from_secret(&data).map_err(|e| bad(&r.name, e))?
        }
    };
    if let Some(r) = &repo.spec.proxy_secret_ref {
        let data = crate::secrets::secret_data(ctx, ns, &r.name).await?;
        auth = auth.with_proxy(GitProxy::from_secret(&data).map_err(|e| bad(&r.name, e))?);
    }
    Ok(auth)
}
