//! What a notifier sends, and the trait that sends it.

use crate::NotifyError;

/// HTTP methods the providers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET (commit-status lookups).
    Get,
    /// POST (almost every provider).
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
}

/// One request a notifier wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The full URL. It may hold a secret (webhook path, token query): never log it whole,
    /// use [`HttpRequest::host`].
    pub url: String,
    /// Headers in order (`Content-Type` included when there is a body).
    pub headers: Vec<(String, String)>,
    /// The body, empty for none.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A POST of `body` as JSON to `url`.
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        HttpRequest {
            method: Method::Post,
            url: url.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Scheme, host and port of the URL: what errors and logs may show.
    pub fn host(&self) -> String {
        redact_url(&self.url)
    }
}

/// Scheme, host and port of `url`, without userinfo, path or query.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    }
}

/// A response: status and body (bounded by the transport).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Sends requests. Blocking: the controller runs notifiers on workers of their own.
pub trait Transport: Send + Sync {
    /// Sends `req` and returns the response whatever its status; fails only when no
    /// response came (connect, TLS, timeout).
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, NotifyError>;

    /// Sends `req` and fails on a non-2xx answer.
    fn send_ok(&self, req: &HttpRequest) -> Result<HttpResponse, NotifyError> {
        let resp = self.send(req)?;
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let body = String::from_utf8_lossy(&resp.body);
        let mut end = body.len().min(256);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        Err(NotifyError::Status {
            host: req.host(),
            status: resp.status,
            body: body[..end].to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_keeps_scheme_host_port_only() {
        assert_eq!(
            redact_url("https://user:pw@hooks.slack.com:443/services/T/B/secret?x=1"),
            "https://hooks.slack.com:443"
        );
        assert_eq!(redact_url("http://h/p"), "http://h");
        assert_eq!(redact_url("h:1/p"), "h:1");
    }
}
