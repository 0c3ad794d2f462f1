//! `grafana`: an annotation `POST {address}` (`/api/annotations`) in Flux's Graphite shape:
//! `when` (Unix seconds), `text` (the object) and tags `flux`, the reporting controller,
//! `key: value` per metadata entry (`:` inside replaced by `|`), then kind, name and
//! namespace. Auth: bearer with the token, else basic with username and password.

use serde_json::json;

use crate::chat::{Typed, check_url_and_credentials, with_credentials};
use crate::{Event, HttpRequest, NotifyError, Settings};

/// The `grafana` type.
pub(crate) static GRAFANA: Typed = Typed { validate, requests };

fn annotation(e: &Event) -> serde_json::Value {
    let o = &e.involved_object;
    let mut tags = vec!["flux".to_string(), e.reporting_controller.clone()];
    for (k, v) in &e.metadata {
        tags.push(format!("{}: {}", k.replace(':', "|"), v.replace(':', "|")));
    }
    tags.push(format!("kind: {}", o.kind));
    tags.push(format!("name: {}", o.name));
    tags.push(format!("namespace: {}", o.namespace));
    json!({
        "when": e.timestamp.timestamp(),
        "text": crate::chat::object_name(e),
        "tags": tags,
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let req = HttpRequest::post_json(s.address.clone(), &annotation(e));
    Ok(vec![with_credentials(req, s, true)])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url_and_credentials("grafana", settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use crate::chat::testutil::{Spoil, assert_validate, event, header, send_recorded, settings};

    const API: &str = "https://grafana.example.com/api/annotations";

    #[test]
    fn posts_annotation_with_bearer() {
        let mut s = settings("grafana", API);
        s.token = "glsa_tok".into();
        s.username = "ignored".into();
        s.password = "ignored".into();
        let e = event(Severity::Info);
        let rec = send_recorded(&GRAFANA, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, API));
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(header(&sent[0], "Authorization"), Some("Bearer glsa_tok"));
        assert_eq!(
            rec.json(0),
            json!({
                "when": 1714557600,
                "text": "kustomization/podinfo.flux-system",
                "tags": [
                    "flux",
                    "kustomize-controller",
                    "revision: main@sha1|abc123",
                    "summary: prod cluster",
                    "kind: Kustomization",
                    "name: podinfo",
                    "namespace: flux-system",
                ],
            })
        );
    }

    #[test]
    fn basic_auth_without_token_and_none_without_either() {
        let mut s = settings("grafana", API);
        let e = event(Severity::Error);
        let reqs = requests(&s, &e).expect("built");
        assert_eq!(header(&reqs[0], "Authorization"), None);
        s.username = "user".into();
        s.password = "pass".into();
        let reqs = requests(&s, &e).expect("built");
        assert_eq!(
            header(&reqs[0], "Authorization"),
            Some("Basic dXNlcjpwYXNz")
        );
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 3] = [
            ("address", |s| s.address.clear()),
            ("username", |s| s.username = "a\nb".into()),
            ("address", |s| s.address = "grafana.example.com/api".into()),
        ];
        assert_validate(&GRAFANA, &settings("grafana", API), &spoilt);
    }
}
