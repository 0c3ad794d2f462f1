//! Per-type verification: a good call, a bad signature or token, a missing header, the
//! events filter and payloads that do not decode.

use base64::Engine as _;
use hyper::StatusCode;
use plumb_api::receiver::ReceiverType as T;

use super::super::webhook::{Rejection, Verdict, sign, verify};
use super::{gcr_event, nexus_sign};

fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

fn ev(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const PUSH: &[u8] = br#"{"eventKey":"repo:refs_changed"}"#;

#[test]
fn bitbucket_hmac_and_event_key() {
    let sig = sign("sha256", "tok", PUSH).unwrap();
    let good = headers(&[
        ("x-hub-signature", &sig),
        ("x-event-key", "repo:refs_changed"),
    ]);
    let events = ev(&["repo:refs_changed"]);
    assert_eq!(
        verify(T::Bitbucket, "tok", &events, &good, PUSH),
        Ok(Verdict::Trigger)
    );
    // Bad signature: keyed with another token.
    assert_eq!(
        verify(T::Bitbucket, "other", &events, &good, PUSH),
        Err(Rejection::Invalid("X-Hub-Signature"))
    );
    // Missing header.
    let none = headers(&[("x-event-key", "repo:refs_changed")]);
    let r = verify(T::Bitbucket, "tok", &events, &none, PUSH).unwrap_err();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Event filter (case-insensitive as Flux).
    let pr = headers(&[("x-hub-signature", &sig), ("x-event-key", "pr:opened")]);
    assert_eq!(
        verify(T::Bitbucket, "tok", &events, &pr, PUSH),
        Err(Rejection::EventNotAllowed("pr:opened".into()))
    );
    let upper = headers(&[
        ("x-hub-signature", &sig),
        ("x-event-key", "REPO:REFS_CHANGED"),
    ]);
    assert_eq!(
        verify(T::Bitbucket, "tok", &events, &upper, PUSH),
        Ok(Verdict::Trigger)
    );
    // No events: every key passes; SHA-1 signatures too.
    let sha1 = sign("sha1", "tok", PUSH).unwrap();
    let h = headers(&[("x-hub-signature", &sha1), ("x-event-key", "pr:opened")]);
    assert_eq!(
        verify(T::Bitbucket, "tok", &[], &h, PUSH),
        Ok(Verdict::Trigger)
    );
}

#[test]
fn harbor_authorization_equals_token() {
    let body = br#"{"type":"PUSH_ARTIFACT"}"#;
    let ok = headers(&[("authorization", "tok")]);
    assert_eq!(
        verify(T::Harbor, "tok", &[], &ok, body),
        Ok(Verdict::Trigger)
    );
    let bad = headers(&[("authorization", "Bearer tok")]);
    let r = verify(T::Harbor, "tok", &[], &bad, body).unwrap_err();
    assert_eq!(r, Rejection::Invalid("Authorization"));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!r.to_string().contains("tok"), "{r}");
    assert_eq!(
        verify(T::Harbor, "tok", &[], &headers(&[]), body),
        Err(Rejection::Missing("Authorization"))
    );
}

#[test]
fn dockerhub_quay_acr_decode_their_payloads() {
    let none = headers(&[]);
    let hub =
        br#"{"push_data":{"tag":"v1"},"repository":{"repo_url":"https://hub.docker.com/r/a/b"}}"#;
    assert_eq!(
        verify(T::Dockerhub, "t", &[], &none, hub),
        Ok(Verdict::Trigger)
    );
    let quay = br#"{"docker_url":"quay.io/a/b","updated_tags":["v1"]}"#;
    assert_eq!(verify(T::Quay, "t", &[], &none, quay), Ok(Verdict::Trigger));
    let acr = br#"{"action":"push","target":{"repository":"a/b","tag":"v1"}}"#;
    assert_eq!(verify(T::Acr, "t", &[], &none, acr), Ok(Verdict::Trigger));
    for (t, bad) in [
        (T::Dockerhub, &br#"{"push_data":{"tag":1}}"#[..]),
        (T::Quay, br#"{"updated_tags":"v1"}"#),
        (T::Acr, br#"{"target":"a/b"}"#),
        (T::Acr, b"not json"),
        (T::Quay, b""),
    ] {
        let r = verify(t, "t", &[], &none, bad).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{t}: {r}");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    // Like Go's decoder, bytes after the first value are not read.
    assert_eq!(
        verify(T::Quay, "t", &[], &none, b"{} trailing"),
        Ok(Verdict::Trigger)
    );
}

#[test]
fn nexus_hmac_sha1_hex() {
    let body = br#"{"action":"CREATED","repositoryName":"docker-hosted"}"#;
    let sig = nexus_sign("tok", body);
    assert_eq!(sig.len(), 40);
    let ok = headers(&[("x-nexus-webhook-signature", &sig)]);
    assert_eq!(
        verify(T::Nexus, "tok", &[], &ok, body),
        Ok(Verdict::Trigger)
    );
    assert_eq!(
        verify(T::Nexus, "other", &[], &ok, body),
        Err(Rejection::Invalid("X-Nexus-Webhook-Signature"))
    );
    assert_eq!(
        verify(T::Nexus, "tok", &[], &ok, b"{\"action\":\"DELETED\"}"),
        Err(Rejection::Invalid("X-Nexus-Webhook-Signature"))
    );
    assert_eq!(
        verify(T::Nexus, "tok", &[], &headers(&[]), body),
        Err(Rejection::Missing("X-Nexus-Webhook-Signature"))
    );
    // Signed but not a Nexus payload.
    let junk = b"[1]";
    let h = headers(&[("x-nexus-webhook-signature", &nexus_sign("tok", junk))]);
    assert!(matches!(
        verify(T::Nexus, "tok", &[], &h, junk),
        Err(Rejection::Malformed(_))
    ));
}

fn cdevent(ty: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "context": {"version": "0.4.1", "id": "271069a8", "source": "/tekton",
            "type": ty, "timestamp": "2026-12-06T18:00:00Z"},
        "subject": {"id": "pipeline-1", "source": "/tekton", "type": "pipelineRun",
            "content": {"pipelineName": "build", "url": "https://ci/1"}}
    }))
    .unwrap()
}

#[test]
fn cdevents_body_and_ce_type_filter() {
    let ty = "dev.cdevents.pipelinerun.finished.0.2.0";
    let body = cdevent(ty);
    let h = headers(&[("ce-type", ty)]);
    let events = ev(&[ty]);
    assert_eq!(
        verify(T::Cdevents, "t", &events, &h, &body),
        Ok(Verdict::Trigger)
    );
    let other = "dev.cdevents.pipelinerun.started.0.2.0";
    let h2 = headers(&[("ce-type", other)]);
    assert_eq!(
        verify(T::Cdevents, "t", &events, &h2, &cdevent(other)),
        Err(Rejection::EventNotAllowed(other.into()))
    );
    // No Ce-Type with a filter: refused; without a filter: accepted.
    assert!(matches!(
        verify(T::Cdevents, "t", &events, &headers(&[]), &body),
        Err(Rejection::EventNotAllowed(_))
    ));
    assert_eq!(
        verify(T::Cdevents, "t", &[], &headers(&[]), &body),
        Ok(Verdict::Trigger)
    );
    // Not a CDEvent.
    for bad in [
        b"{}".to_vec(),
        cdevent("com.example.other"),
        br#"{"context":{"type":"dev.cdevents.x.0.1.0"},"subject":{}}"#.to_vec(),
        b"<xml/>".to_vec(),
    ] {
        let r = verify(T::Cdevents, "t", &[], &h, &bad).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{r}");
    }
}

/// `cdevent(ty)` with `edit` applied to its JSON.
fn cdevent_with(ty: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&cdevent(ty)).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn cdevents_body_is_checked_against_the_schema_shape() {
    let ty = "dev.cdevents.pipelinerun.finished.0.2.0";
    let ok = |body: &[u8]| verify(T::Cdevents, "t", &[], &headers(&[]), body);
    // Every known subject, with optional fields and a pre-release version.
    let fine = [
        cdevent(ty),
        cdevent_with("dev.cdevents.service.deployed.0.2.0-draft", |v| {
            v["subject"]["type"] = "service".into();
        }),
        cdevent_with("dev.cdevents.testcaserun.skipped.0.1.0", |v| {
            v["subject"]["type"] = "testCaseRun".into();
            v["context"]["chainId"] = "abc".into();
            v["context"]["schemaUri"] = "https://example.com/s.json".into();
        }),
        cdevent_with(ty, |v| {
            v["subject"].as_object_mut().unwrap().remove("type");
            v["subject"].as_object_mut().unwrap().remove("source");
        }),
    ];
    for body in &fine {
        assert_eq!(
            ok(body),
            Ok(Verdict::Trigger),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Each broken the way the schema refuses, with the field named.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "context.type",
            cdevent("dev.cdevents.pipelinerun.exploded.0.2.0"),
        ),
        (
            "context.type",
            cdevent("dev.cdevents.spaceship.started.0.1.0"),
        ),
        ("context.type", cdevent("dev.cdevents.pipelinerun.finished")),
        (
            "context.version",
            cdevent_with(ty, |v| v["context"]["version"] = "4".into()),
        ),
        (
            "context.version",
            cdevent_with(ty, |v| v["context"]["version"] = 4.into()),
        ),
        (
            "context.id",
            cdevent_with(ty, |v| v["context"]["id"] = "".into()),
        ),
        (
            "context.source",
            cdevent_with(ty, |v| v["context"]["source"] = "a b".into()),
        ),
        (
            "context.timestamp",
            cdevent_with(ty, |v| v["context"]["timestamp"] = "yesterday".into()),
        ),
        (
            "context.timestamp",
            cdevent_with(ty, |v| {
                v["context"].as_object_mut().unwrap().remove("timestamp");
            }),
        ),
        (
            "context.extra",
            cdevent_with(ty, |v| v["context"]["extra"] = 1.into()),
        ),
        (
            "subject.id",
            cdevent_with(ty, |v| v["subject"]["id"] = serde_json::Value::Null),
        ),
        (
            "subject.type",
            cdevent_with(ty, |v| v["subject"]["type"] = "taskRun".into()),
        ),
        (
            "subject.content",
            cdevent_with(ty, |v| v["subject"]["content"] = "x".into()),
        ),
        (
            "subject.more",
            cdevent_with(ty, |v| v["subject"]["more"] = "x".into()),
        ),
        (
            "subject is required",
            cdevent_with(ty, |v| v["subject"] = "x".into()),
        ),
    ];
    for (field, body) in cases {
        let r = ok(&body).unwrap_err();
        let Rejection::Malformed(msg) = &r else {
            panic!("{field}: {r}")
        };
        assert!(
            msg.starts_with("unable to validate CDEvent event") && msg.contains(field),
            "{field}: {msg}"
        );
    }
}

#[test]
fn gcr_and_generic_oidc_need_a_bearer_and_a_pubsub_payload() {
    let inner = br#"{"action":"INSERT","digest":"gcr.io/p/a@sha256:00","tag":"gcr.io/p/a:v1"}"#;
    let data = base64::engine::general_purpose::STANDARD.encode(inner);
    let push = serde_json::to_vec(&serde_json::json!({"message": {"data": data,
        "messageId": "1", "publishTime": "2026-12-06T18:00:00Z", "subscription": "projects/p/subscriptions/s"}}))
    .unwrap();
    let auth = headers(&[("authorization", "Bearer a.b.c")]);
    assert_eq!(verify(T::Gcr, "t", &[], &auth, &push), Ok(Verdict::Bearer));
    let unwrapped: serde_json::Value = serde_json::from_slice(&gcr_event(&push).unwrap()).unwrap();
    assert_eq!(unwrapped["tag"], "gcr.io/p/a:v1");
    assert_eq!(
        verify(T::Gcr, "t", &[], &headers(&[]), &push),
        Err(Rejection::Missing("Authorization"))
    );
    let basic = headers(&[("authorization", "Basic dTpw")]);
    assert_eq!(
        verify(T::Gcr, "t", &[], &basic, &push)
            .unwrap_err()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let not_push = br#"{"message":{"data":"bm90IGpzb24="}}"#;
    assert!(matches!(
        verify(T::Gcr, "t", &[], &auth, not_push),
        Err(Rejection::Malformed(_))
    ));
    assert_eq!(
        verify(T::GenericOidc, "", &[], &auth, b""),
        Ok(Verdict::Bearer)
    );
    assert_eq!(
        verify(
            T::GenericOidc,
            "",
            &[],
            &headers(&[("authorization", "Bearer ")]),
            b""
        ),
        Err(Rejection::Missing("Authorization: Bearer"))
    );
}
