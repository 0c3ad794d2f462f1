//! Receiver `type: cdevents`: the body must be a CDEvent that validates against the CDEvents
//! (spec v0.4) schema of its type, as notification-controller checks it with the CDEvents
//! SDK before matching `Ce-Type` against `spec.events`; anything else is a 400 saying which
//! field is wrong.

use super::Rejection;

/// The CDEvents (spec v0.4) subjects, as written in `subject.type`, and their predicates:
/// the event types the SDK Flux uses knows (`dev.cdevents.<subject>.<predicate>.<version>`).
const CDEVENT_SUBJECTS: &[(&str, &[&str])] = &[
    ("pipelineRun", &["queued", "started", "finished"]),
    ("taskRun", &["started", "finished"]),
    (
        "change",
        &["created", "reviewed", "merged", "abandoned", "updated"],
    ),
    ("repository", &["created", "modified", "deleted"]),
    ("branch", &["created", "deleted"]),
    ("build", &["queued", "started", "finished"]),
    (
        "artifact",
        &["packaged", "signed", "published", "downloaded", "deleted"],
    ),
    ("testCaseRun", &["queued", "started", "finished", "skipped"]),
    ("testSuiteRun", &["queued", "started", "finished"]),
    ("testOutput", &["published"]),
    ("environment", &["created", "modified", "deleted"]),
    (
        "service",
        &["deployed", "upgraded", "rolledback", "removed", "published"],
    ),
    ("incident", &["detected", "reported", "resolved"]),
    ("ticket", &["created", "updated", "closed"]),
];

/// The fields the CDEvents schemas allow in `context` and `subject` (no others).
const CDEVENT_CONTEXT: &[&str] = &[
    "version",
    "id",
    "source",
    "type",
    "timestamp",
    "schemaUri",
    "chainId",
    "links",
];
const CDEVENT_SUBJECT: &[&str] = &["id", "source", "type", "content"];

/// A CDEvent as Flux's SDK validates it against the event's schema (spec v0.4): a JSON
/// object with a `context` (`version` a semantic version, non-empty `id`, `source` a URI
/// reference, `type` a known `dev.cdevents.<subject>.<predicate>.<version>`, `timestamp`
/// RFC 3339; nothing else but `schemaUri`, `chainId` and `links`) and a `subject` (non-empty
/// `id`, `type` the subject of the event type, `content` an object, optional `source`).
pub(super) fn check_cdevent(body: &[u8]) -> Result<(), Rejection> {
    let bad = |m: &str| Rejection::Malformed(format!("unable to validate CDEvent event: {m}"));
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let ctx = v
        .get("context")
        .and_then(|c| c.as_object())
        .ok_or_else(|| bad("context is required"))?;
    let subject = v
        .get("subject")
        .and_then(|c| c.as_object())
        .ok_or_else(|| bad("subject is required"))?;
    let text =
        |obj: &serde_json::Map<String, serde_json::Value>, at: &str, k: &str| match obj.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            None => Ok(None),
            Some(_) => Err(bad(&format!("{at}.{k} must be a non-empty string"))),
        };
    let required = |obj, at: &str, k: &str| {
        text(obj, at, k)?.ok_or_else(|| bad(&format!("{at}.{k} is required")))
    };
    for (obj, at, allowed) in [
        (ctx, "context", CDEVENT_CONTEXT),
        (subject, "subject", CDEVENT_SUBJECT),
    ] {
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(&format!("{at}.{k} is not a CDEvents field")));
        }
    }
    let ty = required(ctx, "context", "type")?;
    let kind = cdevent_subject(&ty).ok_or_else(|| {
        bad(&format!(
            "context.type {ty:?} is not a known CDEvents type (dev.cdevents.<subject>.<predicate>.<version>)"
        ))
    })?;
    if !is_semver(&required(ctx, "context", "version")?) {
        return Err(bad("context.version is not a semantic version"));
    }
    required(ctx, "context", "id")?;
    if !is_uri_reference(&required(ctx, "context", "source")?) {
        return Err(bad("context.source is not a URI reference"));
    }
    let ts = required(ctx, "context", "timestamp")?;
    if chrono::DateTime::parse_from_rfc3339(&ts).is_err() {
        return Err(bad("context.timestamp is not RFC 3339"));
    }
    required(subject, "subject", "id")?;
    if let Some(src) = text(subject, "subject", "source")?
        && !is_uri_reference(&src)
    {
        return Err(bad("subject.source is not a URI reference"));
    }
    if let Some(t) = text(subject, "subject", "type")?
        && t != kind
    {
        return Err(bad(&format!("subject.type must be {kind:?} for {ty:?}")));
    }
    if !subject.get("content").is_some_and(|c| c.is_object()) {
        return Err(bad("subject.content must be an object"));
    }
    Ok(())
}

/// The `subject.type` of a known CDEvents type `dev.cdevents.<subject>.<predicate>.<ver>`.
fn cdevent_subject(ty: &str) -> Option<&'static str> {
    let rest = ty.strip_prefix("dev.cdevents.")?;
    let mut parts = rest.splitn(3, '.');
    let (subject, predicate, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !is_semver(version) {
        return None;
    }
    CDEVENT_SUBJECTS
        .iter()
        .find(|(s, preds)| s.eq_ignore_ascii_case(subject) && preds.contains(&predicate))
        .map(|(s, _)| *s)
}

/// `major.minor.patch` with an optional `-pre` / `+build` suffix.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A URI reference as JSON Schema's `uri-reference` format needs: no spaces or controls.
fn is_uri_reference(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\\'))
}
