//! Same-origin checks for `plumb ui`, which acts with the user's own credentials.
//!
//! - DNS rebinding: a hostile page whose domain resolves to 127.0.0.1 is same-origin with
//!   the UI in the browser's eyes, so it could read the fleet or post actions. Its requests
//!   carry its own domain in `Host`, so every API request must name the UI's own host: an IP
//!   literal (no rebinding is possible through one) or `localhost`, with the bound port.
//! - CSRF: a cross-site form or `fetch` cannot set a custom header without a CORS
//!   preflight, which this server never grants; actions therefore require
//!   `X-Plumb-Action: 1`, and an `Origin`, when the browser sends one, must be the UI's own.
//!
//! Behind an authenticating proxy (in-cluster), the Host check is off: the shared view is
//! read-only and has no actions to protect.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};

use crate::error::UiError;

/// The header every action must carry.
pub const ACTION_HEADER: &str = "x-plumb-action";

/// Whether `host` (a `Host` header value) names this server bound at `bound`: `localhost`
/// or an IP literal (the bound one, or any when bound to an unspecified address), with the
/// bound port.
pub fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    // `[v6]:port`, `name:port`, or either without a port.
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((n, p)) => (n, p.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    // Browsers send the port unless it is the scheme's default.
    let port = match port {
        Some(p) => p.parse::<u16>().ok(),
        None => Some(80),
    };
    if port != Some(bound.port()) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => bound.ip().is_unspecified() || ip == bound.ip() || ip.is_loopback(),
        Err(_) => false,
    }
}

/// Checks `Host` of any API request (when the server knows its bound address).
pub fn check_host(headers: &HeaderMap, bound: Option<SocketAddr>) -> Result<(), UiError> {
    let Some(bound) = bound else { return Ok(()) };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if host_allowed(host, bound) {
        Ok(())
    } else {
        Err(UiError::Refused(
            "the Host header does not name this server",
        ))
    }
}

/// Checks an action request: the custom header, and a same-origin `Origin` if present.
pub fn check_action(headers: &HeaderMap, bound: Option<SocketAddr>) -> Result<(), UiError> {
    check_host(headers, bound)?;
    if headers.get(ACTION_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Err(UiError::Refused(
            "actions need the X-Plumb-Action: 1 header",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(UiError::Refused("cross-origin action"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hosts() {
        let local: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert!(host_allowed("127.0.0.1:9000", local));
        assert!(host_allowed("localhost:9000", local));
        assert!(host_allowed("[::1]:9000", local));
        assert!(!host_allowed("evil.example:9000", local), "rebinding");
        assert!(!host_allowed("127.0.0.1:9001", local));
        assert!(!host_allowed("127.0.0.1", local));
        assert!(!host_allowed("10.0.0.5:9000", local));
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert!(host_allowed("10.0.0.5:9000", any));
        assert!(!host_allowed("plumb.example:9000", any));
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(host_allowed("[::1]:9000", v6));
    }

    #[test]
    fn actions_need_the_header_and_the_same_origin() {
        let b = Some("127.0.0.1:9000".parse().unwrap());
        let ok = headers(&[("host", "127.0.0.1:9000"), (ACTION_HEADER, "1")]);
        assert!(check_action(&ok, b).is_ok());
        let no_header = headers(&[("host", "127.0.0.1:9000")]);
        assert!(check_action(&no_header, b).is_err());
        let same = headers(&[
            ("host", "localhost:9000"),
            (ACTION_HEADER, "1"),
            ("origin", "http://localhost:9000"),
        ]);
        assert!(check_action(&same, b).is_ok());
        let cross = headers(&[
            ("host", "127.0.0.1:9000"),
            (ACTION_HEADER, "1"),
            ("origin", "http://evil.example"),
        ]);
        assert!(check_action(&cross, b).is_err());
        // Without a bound address (in-cluster) only the header is required.
        let any_host = headers(&[("host", "plumb.flux-system.svc:9000"), (ACTION_HEADER, "1")]);
        assert!(check_action(&any_host, None).is_ok());
    }
}
