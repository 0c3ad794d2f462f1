//! Text helpers several provider families share: Go's camel-case split (Flux turns reasons
//! into words with it), percent-encoding of URL parts, and Basic credentials.

use base64::Engine as _;

/// Splits an identifier at case, digit and symbol changes, keeping acronyms whole:
/// `HealthCheckFailed` -> `Health Check Failed`, `PDFLoader` -> `PDF Loader`.
pub(crate) fn split_camel_case(src: &str) -> Vec<String> {
    fn class(c: char) -> u8 {
        if c.is_lowercase() {
            1
        } else if c.is_uppercase() {
            2
        } else if c.is_numeric() {
            3
        } else {
            4
        }
    }
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = 0;
    for c in src.chars() {
        let cl = class(c);
        match runs.last_mut() {
            Some(run) if cl == last => run.push(c),
            _ => runs.push(vec![c]),
        }
        last = cl;
    }
    // An upper-case run followed by a lower-case one gives its last letter to the next word.
    for i in 0..runs.len().saturating_sub(1) {
        let upper_then_lower = runs[i].first().is_some_and(|c| c.is_uppercase())
            && runs[i + 1].first().is_some_and(|c| c.is_lowercase());
        if upper_then_lower && let Some(c) = runs[i].pop() {
            runs[i + 1].insert(0, c);
        }
    }
    runs.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.into_iter().collect())
        .collect()
}

/// Percent-encodes every byte but RFC 3986's unreserved characters and `keep`.
fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes everything but the unreserved characters, so an owner, repository,
/// project path or key is one URL path segment or query value whatever it holds.
pub(crate) fn encode(s: &str) -> String {
    percent_encode(s, b"")
}

/// Percent-encodes what may not stand in one URL path segment (RFC 3986 `pchar`), so a room
/// id or alias cannot add path segments or a query.
pub(crate) fn path_segment(s: &str) -> String {
    percent_encode(s, b"!$&'()*+,;=:@")
}

/// `Authorization: Basic` value of a username and password.
pub(crate) fn basic_auth(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}
