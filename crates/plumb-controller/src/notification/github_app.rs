//! GitHub App authentication of the `github` and `githubdispatch` types, as Flux 2.9: a
//! Secret with `githubAppID`, `githubAppInstallationID`, `githubAppPrivateKey` (and
//! optionally `githubAppBaseURL`) and no `token` makes plumb exchange the app's signed JWT
//! for an installation token before a delivery. The exchange is GitRepository's
//! (`plumb_source::git::github_app`), and so is the cache (one context memo): a token is
//! reused until five minutes before it expires. The token request uses the Provider's
//! timeout and `certSecretRef` CA.

use std::collections::BTreeMap;
use std::time::Duration;

use plumb_notify::{NotifyError, Settings};
use plumb_source::git::github_app::{GitHubApp, TokenCache};

use crate::outcome::{Class, Failure};

/// A Provider's GitHub App and what its token requests need.
pub struct AppAuth {
    app: GitHubApp,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
}

/// The app of `settings`' Secret `data` when the type authenticates as one (no `token`, a
/// `githubAppID`); a bad app (missing key, key not PEM RSA) is stalled, naming the key.
pub fn from_secret(
    settings: &Settings,
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
) -> Result<Option<AppAuth>, Failure> {
    let is_app_type =
        plumb_notify::commit_status::GITHUB_APP_TYPES.contains(&settings.provider_type.as_str());
    if !is_app_type || !plumb_notify::commit_status::uses_github_app(settings) {
        return Ok(None);
    }
    let app = GitHubApp::from_secret(data).map_err(|e| {
        Failure::new(
            Class::Stalled,
            super::resolve::REASON_INVALID_PROVIDER,
            format!("secret '{secret}': {e}"),
        )
    })?;
    Ok(Some(AppAuth {
        app,
        timeout,
        ca_pem,
    }))
}

impl AppAuth {
    /// `settings` with an installation token of the app (cached, or a new one; blocking).
    /// A token endpoint that cannot be reached or fails is retryable; one that refuses the
    /// app is not. Errors name the endpoint, never the key or a token.
    pub fn settings_with_token(
        &self,
        cache: &TokenCache,
        settings: &Settings,
    ) -> Result<Settings, NotifyError> {
        let token = cache
            .token(&self.app, self.timeout, self.ca_pem.as_deref())
            .map_err(|e| {
                let message = format!("GitHub App installation token: {e}");
                match e.kind() {
                    plumb_source::ErrorKind::Unreachable | plumb_source::ErrorKind::Timeout => {
                        NotifyError::Transport {
                            host: plumb_notify::redact_url(&self.app.token_url()),
                            message,
                        }
                    }
                    _ => NotifyError::InvalidSettings(message),
                }
            })?;
        let mut s = settings.clone();
        s.token = token.token;
        Ok(s)
    }
}
