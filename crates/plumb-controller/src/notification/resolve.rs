//! A Provider and its Secrets resolved into what a delivery needs: [`plumb_notify::Settings`]
//! (Flux's precedence: the Secret's `address`, `proxy`, `token`, `username`, `password` and
//! `headers` override the spec), the transport options (timeout, proxy, TLS) and the
//! notifier of its type. Errors name Secrets and keys, never their values.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use plumb_api::Provider;
use plumb_api::consts::reason;
use plumb_notify::{Notifier, ProxyOptions, Settings, Transport, TransportOptions};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Reason of a Provider whose type plumb does not serve, or whose settings are unusable.
pub const REASON_INVALID_PROVIDER: &str = "InvalidProvider";

/// A Provider ready to deliver: what the dispatcher's worker for it uses.
pub struct Resolved {
    /// `namespace/name`.
    pub key: String,
    /// The Provider's UID (commit status keys) and generation when resolved.
    pub uid: String,
    /// `metadata.generation` when resolved.
    pub generation: Option<i64>,
    /// The Provider as resolved (for `commitStatusExpr`'s `provider` variable).
    pub provider: Arc<Provider>,
    /// Settings from spec and Secret (holds secrets: never log).
    pub settings: Settings,
    /// The notifier of the type.
    pub notifier: &'static dyn Notifier,
    /// The HTTP transport with the Provider's timeout, proxy and TLS.
    pub transport: Arc<dyn Transport>,
    /// The GitHub App the `github` types get a token from when the Secret has no `token`.
    pub github_app: Option<super::github_app::AppAuth>,
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key).map(|v| {
        String::from_utf8_lossy(v)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    })
}

fn invalid(message: String) -> Failure {
    Failure::new(Class::Stalled, REASON_INVALID_PROVIDER, message)
}

/// The Secret's `headers` key: a YAML (or JSON) map of header names to values.
fn headers(raw: &str, secret: &str) -> Result<BTreeMap<String, String>, Failure> {
    serde_saphyr::from_str::<BTreeMap<String, String>>(raw).map_err(|_| {
        invalid(format!(
            "secret '{secret}' key 'headers' is not a YAML map of header names to strings"
        ))
    })
}

/// Settings from the spec and the `secretRef` Secret's data (Flux's precedence).
pub fn settings(
    p: &Provider,
    secret: Option<(&str, &BTreeMap<String, Vec<u8>>)>,
) -> Result<Settings, Failure> {
    let spec = &p.spec;
    let mut s = Settings {
        provider_type: spec.type_.as_str().to_string(),
        provider: format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
        address: spec.address.clone().unwrap_or_default(),
        channel: spec.channel.clone().unwrap_or_default(),
        username: spec.username.clone().unwrap_or_default(),
        ..Default::default()
    };
    let Some((name, data)) = secret else {
        return Ok(s);
    };
    for (key, field) in [
        ("address", &mut s.address),
        ("token", &mut s.token),
        ("username", &mut s.username),
        ("password", &mut s.password),
    ] {
        if let Some(v) = text(data, key) {
            *field = v;
        }
    }
    if let Some(raw) = text(data, "headers") {
        s.headers = headers(&raw, name)?;
    }
    for (k, v) in data {
        if !matches!(
            k.as_str(),
            "address" | "token" | "username" | "password" | "headers"
        ) {
            s.extra
                .insert(k.clone(), String::from_utf8_lossy(v).into_owned());
        }
    }
    Ok(s)
}

async fn secret(ctx: &Context, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, Failure> {
    crate::secrets::secret_data(ctx, ns, name).await
}

/// Transport options: `spec.timeout`, the proxy (`proxySecretRef`, else the credential
/// Secret's `proxy`, else the deprecated `spec.proxy`), and `certSecretRef`'s TLS material.
async fn transport_options(
    ctx: &Context,
    p: &Provider,
    secret_proxy: Option<String>,
) -> Result<TransportOptions, Failure> {
    let ns = p.namespace().unwrap_or_default();
    let timeout = p
        .timeout()
        .map_err(|e| invalid(format!("spec.timeout: {e}")))?;
    let mut proxy = secret_proxy
        .or_else(|| p.spec.proxy.clone())
        .filter(|a| !a.is_empty())
        .map(|address| ProxyOptions {
            address,
            ..Default::default()
        });
    if let Some(r) = &p.spec.proxy_secret_ref {
        let data = secret(ctx, &ns, &r.name).await?;
        let address = text(&data, "address")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid(format!("proxy secret '{}' has no 'address'", r.name)))?;
        proxy = Some(ProxyOptions {
            address,
            username: text(&data, "username"),
            password: text(&data, "password"),
        });
    }
    let mut opts = TransportOptions {
        timeout,
        proxy,
        ..Default::default()
    };
    if let Some(r) = &p.spec.cert_secret_ref {
        let data = secret(ctx, &ns, &r.name).await?;
        let pick = |a: &str, b: &str| data.get(a).or_else(|| data.get(b)).cloned();
        opts.ca_pem = pick("ca.crt", "caFile");
        let cert = pick("tls.crt", "certFile");
        let key = pick("tls.key", "keyFile");
        opts.client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(invalid(format!(
                    "cert secret '{}' must hold both 'tls.crt' and 'tls.key', or neither",
                    r.name
                )));
            }
        };
        if opts.ca_pem.is_none() && opts.client_cert.is_none() {
            return Err(invalid(format!(
                "cert secret '{}' holds none of 'ca.crt', 'tls.crt', 'tls.key'",
                r.name
            )));
        }
    }
    Ok(opts)
}

/// Resolves Provider `p`: a type plumb does not serve, a bad setting or a bad Secret is
/// stalled; a Secret that is missing is waiting (it may appear).
pub async fn resolve(ctx: &Context, p: Arc<Provider>) -> Result<Resolved, Failure> {
    let ns = p.namespace().unwrap_or_default();
    let type_ = p.spec.type_.as_str();
    let notifier = plumb_notify::notifier_for(type_).ok_or_else(|| {
        invalid(format!(
            "provider type '{type_}' is not supported by plumb; events for this Provider are not sent"
        ))
    })?;
    if p.spec.commit_status_expr.is_some() && !p.is_commit_status() {
        return Err(invalid(format!(
            "spec.commitStatusExpr is only supported for the {} provider types",
            plumb_api::notification::COMMIT_STATUS_TYPES.join(", ")
        )));
    }
    if let Some(expr) = &p.spec.commit_status_expr {
        crate::cel::Expression::cached(expr, Some(&["event", "provider", "alert"])).map_err(
            |e| {
                Failure::new(
                    Class::Stalled,
                    reason::INVALID_CEL_EXPRESSION,
                    format!("spec.commitStatusExpr: {e}"),
                )
            },
        )?;
    }
    let data = match &p.spec.secret_ref {
        Some(r) => Some((r.name.clone(), secret(ctx, &ns, &r.name).await?)),
        None => None,
    };
    let settings = settings(&p, data.as_ref().map(|(n, d)| (n.as_str(), d)))?;
    let secret_proxy = data.as_ref().and_then(|(_, d)| text(d, "proxy"));
    notifier
        .validate(&settings)
        .map_err(|e| invalid(e.to_string()))?;
    let opts = transport_options(ctx, &p, secret_proxy).await?;
    let github_app = match &data {
        Some((name, d)) => {
            super::github_app::from_secret(&settings, name, d, opts.timeout, opts.ca_pem.clone())?
        }
        None => None,
    };
    let transport = plumb_notify::HttpTransport::new(&opts).map_err(|e| invalid(e.to_string()))?;
    Ok(Resolved {
        key: settings.provider.clone(),
        uid: p.uid().unwrap_or_default(),
        generation: p.metadata.generation,
        provider: p,
        settings,
        notifier,
        transport: Arc::new(transport),
        github_app,
    })
}
