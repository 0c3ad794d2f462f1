//! What the chat and incident types share: Flux's `kind/name.namespace` object name, cutting
//! text to a service's documented size limit, and the address checks Flux makes.

use std::borrow::Cow;

pub(crate) use crate::text::{basic_auth, path_segment};
use crate::{Delivery, Event, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// Appended where text was cut to fit a service's limit.
pub(crate) const ELLIPSIS: &str = "…";

/// Flux's heading for an object: `kustomization/podinfo.flux-system`.
pub(crate) fn object_name(e: &Event) -> String {
    let o = &e.involved_object;
    format!("{}/{}.{}", o.kind.to_lowercase(), o.name, o.namespace)
}

/// `s` cut to at most `max` characters, the last one an ellipsis when cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let keep = max.saturating_sub(1);
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    Cow::Owned(format!("{}{ELLIPSIS}", &s[..end]))
}

/// `s` cut to at most `max` bytes of UTF-8, ending in an ellipsis when cut.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(ELLIPSIS.len()).min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{ELLIPSIS}", &s[..end]))
}

/// Checks `address` is an absolute `http`/`https` URL with a host (Flux parses it with
/// `url.ParseRequestURI`). The error never quotes the address: webhook URLs are secrets.
pub(crate) fn check_url(provider_type: &str, address: &str) -> Result<(), NotifyError> {
    let bad = |why: &str| {
        Err(NotifyError::InvalidSettings(format!(
            "{provider_type}: the address {why}"
        )))
    };
    if address.is_empty() {
        return bad("is required");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    let Some((scheme, rest)) = address.split_once("://") else {
        return bad("must be an absolute http(s) URL");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return bad("must use the http or https scheme");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return bad("has no host");
    }
    Ok(())
}

/// Fails with `<type>: <what> is required` when `value` is empty.
pub(crate) fn require(provider_type: &str, value: &str, what: &str) -> Result<(), NotifyError> {
    if value.is_empty() {
        return Err(NotifyError::InvalidSettings(format!(
            "{provider_type}: {what} is required"
        )));
    }
    Ok(())
}

/// Fails when a secret value sent in a header or URL holds a line break or other control
/// character (often a trailing newline from `echo token > file`): it cannot be sent as is.
/// The error names the field, never the value.
pub(crate) fn check_secret(
    provider_type: &str,
    value: &str,
    what: &str,
) -> Result<(), NotifyError> {
    if value.chars().any(char::is_control) {
        return Err(NotifyError::InvalidSettings(format!(
            "{provider_type}: {what} contains a line break or control character"
        )));
    }
    Ok(())
}

/// [`require`] and [`check_secret`] together.
pub(crate) fn require_secret(
    provider_type: &str,
    value: &str,
    what: &str,
) -> Result<(), NotifyError> {
    require(provider_type, value, what)?;
    check_secret(provider_type, value, what)
}

/// The checks of a type that needs an address and an API token.
pub(crate) fn check_url_and_token(provider_type: &str, s: &Settings) -> Result<(), NotifyError> {
    check_url(provider_type, &s.address)?;
    require_secret(provider_type, &s.token, "the secret's token (the API key)")
}

/// The checks of a type with an address and optional bearer or basic credentials.
pub(crate) fn check_url_and_credentials(
    provider_type: &str,
    s: &Settings,
) -> Result<(), NotifyError> {
    check_url(provider_type, &s.address)?;
    check_secret(provider_type, &s.token, "the secret's token")?;
    check_secret(provider_type, &s.username, "the username")
}

/// Adds `Authorization` from optional credentials: basic when username and password are both
/// set, bearer when the token is; `token_first` says which wins when both are (Grafana's
/// notifier prefers the token, Alertmanager's the basic credentials).
pub(crate) fn with_credentials(req: HttpRequest, s: &Settings, token_first: bool) -> HttpRequest {
    let basic = (!s.username.is_empty() && !s.password.is_empty())
        .then(|| basic_auth(&s.username, &s.password));
    let bearer = (!s.token.is_empty()).then(|| format!("Bearer {}", s.token));
    let chosen = if token_first {
        bearer.or(basic)
    } else {
        basic.or(bearer)
    };
    match chosen {
        Some(value) => req.header("Authorization", value),
        None => req,
    }
}

/// Scheme and host (with port) of an address already checked by [`check_url`].
pub(crate) fn scheme_host(address: &str) -> String {
    crate::transport::redact_url(address)
}

/// A provider type as two functions: its settings check and the requests it sends for an
/// event. Sending checks the settings, skips commit-status updates, then sends the requests
/// in order through [`Transport::send_ok`]; the first failure stops (4xx other than 429 is
/// not retryable).
pub(crate) struct Typed {
    /// The settings check (what Flux enforces before a Provider is Ready).
    pub(crate) validate: fn(&Settings) -> Result<(), NotifyError>,
    /// The requests for one event, settings already checked.
    pub(crate) requests: fn(&Settings, &Event) -> Result<Vec<HttpRequest>, NotifyError>,
}

impl Notifier for Typed {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        (self.validate)(settings)
    }

    fn send(&self, d: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        (self.validate)(d.settings)?;
        // Flux's non-git notifiers drop the `commit_status: update` events that exist only
        // for commit-status providers (they repeat the reconcile's success).
        if d.event.is_commit_status_update() {
            return Ok(());
        }
        for req in (self.requests)(d.settings, d.event)? {
            transport.send_ok(&req)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("ééé", 2), "é…");
        assert_eq!(truncate_bytes("abc", 3), "abc");
        let cut = truncate_bytes("éééé", 6);
        assert!(cut.len() <= 6, "{cut}");
        assert!(cut.ends_with(ELLIPSIS));
    }

    #[test]
    fn check_url_table() {
        for ok in [
            "https://hooks.example.com/x",
            "http://127.0.0.1:8080",
            "https://u:p@h/p?q=1",
        ] {
            assert!(check_url("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "hooks.example.com/x",
            "ftp://h/x",
            "https:///x",
            "https://:80/x",
            "https://h/a b",
            "https://h/\n",
        ] {
            let err = check_url("t", bad).expect_err(bad).to_string();
            assert!(
                err.starts_with("invalid provider settings: t: the address"),
                "{err}"
            );
        }
        // The error never quotes the address (it may hold a webhook secret).
        let err = check_url("t", "nope-secret-token").expect_err("bad");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn secrets_with_control_characters_are_refused_without_quoting() {
        assert!(require_secret("t", "abc", "the token").is_ok());
        assert!(check_secret("t", "", "the token").is_ok());
        let err = require_secret("t", "abc\n", "the token").expect_err("newline");
        assert_eq!(
            err.to_string(),
            "invalid provider settings: t: the token contains a line break or control character"
        );
        assert!(require_secret("t", "", "the token").is_err());
    }

    #[test]
    fn path_segment_escapes_separators() {
        assert_eq!(path_segment("!room:matrix.org"), "!room:matrix.org");
        assert_eq!(path_segment("#a/b?c"), "%23a%2Fb%3Fc");
    }

    #[test]
    fn basic_auth_value() {
        assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
    }
}
