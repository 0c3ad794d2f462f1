//! `provider: github`: the GitHub App of the Secret mints an installation token (cached in a
//! context memo until near expiry), used as the HTTPS password of `x-access-token`.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use plumb_api::GitRepository;
use plumb_api::consts::reason;
use plumb_source::git::GitAuth;
use plumb_source::git::github_app::{GitHubApp, TokenCache};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// `auth` (the Secret's trust material) with an installation token of the Secret's app.
pub(super) async fn auth(
    obj: &GitRepository,
    ctx: &Context,
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
    auth: GitAuth,
) -> Result<GitAuth, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let app = GitHubApp::from_secret(data).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{secret}': {e}"),
        )
    })?;
    let cache = ctx.memo::<TokenCache>();
    let ca = auth.ca_pem().map(<[u8]>::to_vec);
    let timeout = obj.timeout().unwrap_or(Duration::from_secs(60));
    let token = tokio::task::spawn_blocking(move || cache.token(&app, timeout, ca.as_deref()))
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::AUTHENTICATION_FAILED,
                format!("GitHub App token task failed: {e}"),
            )
        })?
        .map_err(|e| {
            let class = match e.kind() {
                plumb_source::ErrorKind::Unreachable | plumb_source::ErrorKind::Timeout => {
                    Class::Transient
                }
                _ => Class::Stalled,
            };
            Failure::new(
                class,
                reason::AUTHENTICATION_FAILED,
                format!("failed to get a GitHub App installation token: {e}"),
            )
        })?;
    Ok(auth.with_github_token(token.token))
}
