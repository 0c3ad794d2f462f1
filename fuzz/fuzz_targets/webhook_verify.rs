//! Fuzzes webhook verification (`plumb_controller::receiver::verify`) with an arbitrary
//! receiver type, token, event filter, headers and body. Beyond "no panic": an accepted
//! call must carry the right secret (an HMAC recomputed here, or the GitLab token), a call
//! signed with `sign` must be accepted, and a rejection never quotes the token.
//!
//! Input: byte 0 picks the receiver type, byte 1 the mode (bit 0: sign the body correctly,
//! bits 1-2: the hash), then fields separated by 0xFF: token, events (comma-separated),
//! body, and headers as `<name byte><value>` (a name byte below 7 picks a webhook header,
//! others start a name of their own up to ':').
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use plumb_api::receiver::ReceiverType;
use plumb_controller::receiver::{Verdict, sign, verify};

const TYPES: &[ReceiverType] = &[
    ReceiverType::Generic,
    ReceiverType::GenericHmac,
    ReceiverType::Github,
    ReceiverType::Gitlab,
    ReceiverType::Bitbucket,
    ReceiverType::Harbor,
    ReceiverType::Dockerhub,
    ReceiverType::Quay,
    ReceiverType::Gcr,
    ReceiverType::Nexus,
    ReceiverType::Acr,
    ReceiverType::Cdevents,
    ReceiverType::GenericOidc,
];
const NAMES: &[&str] = &[
    "x-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-gitlab-token",
    "x-gitlab-event",
    "content-type",
    "x-event-key",
    "authorization",
    "x-nexus-webhook-signature",
    "ce-type",
];
const ALGOS: &[&str] = &["sha1", "sha256", "sha512", "md5"];

fn header(name: &str, value: &[u8], headers: &mut HeaderMap) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        headers.append(n, v);
    }
}

fn headers_from(fields: &[&[u8]], headers: &mut HeaderMap) {
    for f in fields {
        let Some((&first, rest)) = f.split_first() else {
            continue;
        };
        match NAMES.get(usize::from(first)) {
            Some(name) => header(name, rest, headers),
            None => {
                let at = f.iter().position(|b| *b == b':').unwrap_or(f.len());
                let name = String::from_utf8_lossy(&f[..at]).to_ascii_lowercase();
                header(&name, f.get(at + 1..).unwrap_or_default(), headers);
            }
        }
    }
}

/// The secret a verified call must have carried.
fn check_accepted(t: ReceiverType, token: &str, headers: &HeaderMap, body: &[u8]) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let hmac_header = match t {
        ReceiverType::GenericHmac => get("x-signature"),
        ReceiverType::Github => get("x-hub-signature-256").or_else(|| get("x-hub-signature")),
        ReceiverType::Gitlab => {
            assert_eq!(
                get("x-gitlab-token"),
                Some(token),
                "GitLab call without the token"
            );
            return;
        }
        ReceiverType::Bitbucket => get("x-hub-signature-256").or_else(|| get("x-hub-signature")),
        ReceiverType::Harbor => {
            assert_eq!(
                get("authorization"),
                Some(token),
                "Harbor call without the token"
            );
            return;
        }
        ReceiverType::Nexus => {
            let sig = get("x-nexus-webhook-signature").expect("Nexus accepted unsigned");
            assert_eq!(sig, plumb_controller::receiver::nexus_sign(token, body));
            return;
        }
        // The path is their only secret (as Flux); gcr and generic-oidc answer Bearer, which
        // the server verifies against the issuer before triggering anything.
        ReceiverType::Generic
        | ReceiverType::Dockerhub
        | ReceiverType::Quay
        | ReceiverType::Acr
        | ReceiverType::Cdevents
        | ReceiverType::Gcr
        | ReceiverType::GenericOidc => return,
    };
    let sig = hmac_header.expect("HMAC type accepted without a signature");
    let (algo, hex) = sig
        .split_once('=')
        .expect("accepted a signature without '='");
    let want = sign(&algo.to_ascii_lowercase(), token, body).expect("accepted an unknown hash");
    let want_hex = want.split_once('=').map(|(_, h)| h).unwrap_or_default();
    assert!(
        hex.trim().eq_ignore_ascii_case(want_hex),
        "accepted a wrong signature {sig:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let [t, mode, rest @ ..] = data else {
        return;
    };
    let t = TYPES[usize::from(*t) % TYPES.len()];
    let mut fields = rest.split(|b| *b == 0xFF);
    let token = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let events: Vec<String> = String::from_utf8_lossy(fields.next().unwrap_or_default())
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    let body = fields.next().unwrap_or_default().to_vec();
    let rest: Vec<&[u8]> = fields.collect();
    let mut headers = HeaderMap::new();
    let algo = ALGOS[usize::from(mode >> 1) % ALGOS.len()];
    let signed = mode & 1 == 1 && algo != "md5";
    if signed {
        let sig = sign(algo, &token, &body).expect("a supported hash");
        let name = if t == ReceiverType::Github {
            "x-hub-signature-256"
        } else {
            "x-signature"
        };
        header(name, sig.as_bytes(), &mut headers);
    }
    headers_from(&rest, &mut headers);

    match verify(t, &token, &events, &headers, &body) {
        Ok(verdict) => {
            check_accepted(t, &token, &headers, &body);
            if verdict == Verdict::Ping {
                assert_eq!(t, ReceiverType::Github);
            }
        }
        Err(rej) => {
            let _ = rej.status();
            // Our signature is the first X-Signature, the one verified: it must pass.
            assert!(
                !(signed && t == ReceiverType::GenericHmac),
                "a correctly signed call was refused: {rej}"
            );
        }
    }
    // No message quotes the token: with a token no header, event or fixed text can hold,
    // a rejection must not contain it.
    let sentinel = "\u{1}".repeat(token.len().max(8));
    if let Err(rej) = verify(t, &sentinel, &events, &headers, &body) {
        let msg = rej.to_string();
        assert!(
            !msg.contains(&sentinel),
            "a rejection quotes the token: {msg:?}"
        );
    }
});
