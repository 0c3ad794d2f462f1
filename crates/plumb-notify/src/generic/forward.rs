//! `generic` and `generic-hmac`: POST the event in Flux's JSON shape to the address, with the
//! Secret's `headers`; `generic-hmac` signs the body (`X-Signature: sha256=<hex HMAC-SHA256
//! of the body keyed with the token>`), which a Receiver of type `generic-hmac` verifies.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The two forwarding types.
pub(super) struct Forward {
    /// Sign the body with the token.
    pub(super) hmac: bool,
}

/// `sha256=<hex>` of `body` keyed with `key`, as Flux's forwarder signs it.
pub fn hmac_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks that `address` is an absolute HTTP(S) URL; errors never quote it (its path may be
/// a secret).
pub fn webhook_url(address: &str) -> Result<(), NotifyError> {
    let ok = ["http://", "https://"].iter().any(|s| {
        address
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
            && address.len() > s.len()
    });
    if address.is_empty() {
        return Err(NotifyError::InvalidSettings("no address".into()));
    }
    if !ok || address.chars().any(char::is_whitespace) {
        return Err(NotifyError::InvalidSettings(
            "address is not an http(s) URL".into(),
        ));
    }
    Ok(())
}

impl Notifier for Forward {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        webhook_url(&settings.address)?;
        if self.hmac && settings.token.is_empty() {
            return Err(NotifyError::InvalidSettings(
                "generic-hmac needs a 'token' in the Secret to sign with".into(),
            ));
        }
        Ok(())
    }

    fn send(&self, d: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        // Flux sends commit-status updates to commit-status providers only.
        if d.event.is_commit_status_update() {
            return Ok(());
        }
        let body = serde_json::to_vec(d.event)
            .map_err(|e| NotifyError::Undeliverable(format!("encoding the event: {e}")))?;
        let mut req = HttpRequest {
            method: crate::Method::Post,
            url: d.settings.address.clone(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Vec::new(),
        }
        .header("gotk-component", d.event.reporting_controller.clone());
        for (k, v) in &d.settings.headers {
            req = req.header(k.clone(), v.clone());
        }
        if self.hmac {
            let sig = hmac_signature(d.settings.token.as_bytes(), &body);
            req = req.header("X-Signature", sig);
        }
        req.body = body;
        transport.send_ok(&req).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Recorder;
    use crate::{Event, HttpResponse, Method};

    fn settings(kind: &str) -> Settings {
        Settings {
            provider_type: kind.into(),
            provider: "ns/p".into(),
            address: "https://hooks.example.com/in/s3cret".into(),
            token: "k3y".into(),
            headers: [("X-Team".to_string(), "platform".to_string())].into(),
            ..Default::default()
        }
    }

    fn event() -> Event {
        let mut e = Event {
            message: "applied".into(),
            reason: "ReconciliationSucceeded".into(),
            reporting_controller: "kustomize-controller".into(),
            ..Default::default()
        };
        e.involved_object.kind = "Kustomization".into();
        e.involved_object.name = "apps".into();
        e.involved_object.namespace = "flux-system".into();
        e.metadata.insert("revision".into(), "main@sha1:abc".into());
        e
    }

    fn send(kind: &str, ev: &Event, rec: &Recorder) -> Result<(), NotifyError> {
        let s = settings(kind);
        let n = crate::notifier_for(kind).unwrap();
        n.validate(&s)?;
        n.send(
            &Delivery {
                settings: &s,
                event: ev,
                commit_status_key: None,
            },
            rec,
        )
    }

    #[test]
    fn generic_posts_the_event_json_with_headers() {
        let rec = Recorder::default();
        send("generic", &event(), &rec).unwrap();
        let req = &rec.sent()[0];
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url, "https://hooks.example.com/in/s3cret");
        assert!(
            req.headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert!(
            req.headers
                .contains(&("gotk-component".into(), "kustomize-controller".into()))
        );
        assert!(req.headers.contains(&("X-Team".into(), "platform".into())));
        assert!(!req.headers.iter().any(|(k, _)| k == "X-Signature"));
        let v = rec.json(0);
        assert_eq!(v["involvedObject"]["kind"], "Kustomization");
        assert_eq!(v["involvedObject"]["name"], "apps");
        assert_eq!(v["severity"], "info");
        assert_eq!(v["message"], "applied");
        assert_eq!(v["reason"], "ReconciliationSucceeded");
        assert_eq!(v["metadata"]["revision"], "main@sha1:abc");
        assert_eq!(v["reportingController"], "kustomize-controller");
    }

    #[test]
    fn generic_hmac_signs_the_exact_body() {
        let rec = Recorder::default();
        send("generic-hmac", &event(), &rec).unwrap();
        let req = &rec.sent()[0];
        let sig = req
            .headers
            .iter()
            .find(|(k, _)| k == "X-Signature")
            .map(|(_, v)| v.clone())
            .unwrap();
        // Independently: HMAC-SHA256 over the sent bytes with the token as key.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k3y").unwrap();
        mac.update(&req.body);
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        // RFC 4231 test case 2 pins the encoding.
        assert_eq!(
            hmac_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_without_token_and_bad_addresses_are_rejected() {
        let mut s = settings("generic-hmac");
        s.token.clear();
        let n = crate::notifier_for("generic-hmac").unwrap();
        assert!(n.validate(&s).unwrap_err().to_string().contains("token"));
        for bad in ["", "ftp://x", "hooks.example.com/x", "http://"] {
            s.address = bad.into();
            s.token = "k".into();
            assert!(n.validate(&s).is_err(), "{bad}");
        }
    }

    #[test]
    fn commit_status_updates_are_not_forwarded_and_errors_are_classified() {
        let rec = Recorder::default();
        let mut e = event();
        e.metadata.insert("commit_status".into(), "update".into());
        send("generic", &e, &rec).unwrap();
        assert!(rec.sent().is_empty());
        let rec = Recorder::answering(vec![HttpResponse {
            status: 503,
            body: b"busy".to_vec(),
        }]);
        let err = send("generic", &event(), &rec).unwrap_err();
        assert!(err.is_retryable());
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let rec = Recorder::answering(vec![HttpResponse {
            status: 400,
            body: Vec::new(),
        }]);
        assert!(!send("generic", &event(), &rec).unwrap_err().is_retryable());
    }
}
