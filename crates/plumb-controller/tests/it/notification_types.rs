//! Every Provider type plumb serves, end to end through the controller against the real API
//! server: one Provider per type (with the Secret keys Flux reads for it) pointing at a local
//! HTTP server of its own, one Alert each on the Kustomizations, one Kustomization going
//! Ready; each server must get the request the service documents (method, path, key headers,
//! JSON body shape; for commit-status types the revision's commit SHA and the stable status
//! key). GitHub App authentication and `matchLabels` are in `notification_routing.rs`.

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::{Alert, Provider};
use plumb_testing::webhook_sink::{Behaviour, Received, WebhookSink};
use serde_json::{Value, json};
use sha1::Digest as _;

use crate::common::world::{World, within};
use crate::notifications::{alert, apply_apps, files, provider, secret, wait_ready};

/// What every type's request is checked against.
struct Expect {
    /// The test namespace.
    ns: String,
    /// The commit the Kustomization applied.
    sha: String,
    /// The revision (`master@sha1:<sha>`).
    revision: String,
    /// Flux's commit status key of the Kustomization for this Provider.
    key: String,
}

/// One Provider type: its spec (address relative to its server as `{B}`), Secret data,
/// the request checked (method and path or path prefix), the headers it must carry, and
/// checks of its JSON body.
struct Case {
    ty: &'static str,
    spec: Value,
    secret: Value,
    method: &'static str,
    path: fn(&Expect) -> String,
    headers: Vec<(&'static str, String)>,
    body: fn(&Value, &Expect),
}

/// A [`Case`] from its parts, one line each.
fn case(
    ty: &'static str,
    (spec, secret): (Value, Value),
    (method, path): (&'static str, fn(&Expect) -> String),
    headers: &[(&'static str, &str)],
    body: fn(&Value, &Expect),
) -> Case {
    let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Case {
        ty,
        spec,
        secret,
        method,
        path,
        headers,
        body,
    }
}

fn text(r: &Received) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The body as JSON; a form-encoded body (zulip) as an object of its decoded fields.
fn body_of(r: &Received) -> Value {
    if r.header("content-type") != Some("application/x-www-form-urlencoded") {
        return r.json();
    }
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let mut out = Vec::new();
        let mut bytes = v.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).unwrap()
    };
    text(r)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), json!(decode(v))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn sha1_hex(s: &str) -> String {
    hex::encode(sha1::Sha1::digest(s.as_bytes()))
}

/// The object name Flux's chat types print: `kustomization/apps.<ns>`.
fn object(x: &Expect) -> String {
    format!("kustomization/apps.{}", x.ns)
}

/// Asserts the string at each JSON pointer of `b`.
fn at(b: &Value, want: &[(&str, &str)]) {
    for (pointer, v) in want {
        assert_eq!(
            b.pointer(pointer).and_then(Value::as_str),
            Some(*v),
            "{pointer} in {b}"
        );
    }
}

/// Asserts the string at `pointer` contains `part`.
fn contains(b: &Value, pointer: &str, part: &str) {
    let s = b.pointer(pointer).map(Value::to_string).unwrap_or_default();
    assert!(s.contains(part), "{pointer} lacks {part:?} in {b}");
}

fn chat_cases() -> Vec<Case> {
    let post = "POST";
    vec![
        case(
            "generic",
            (
                json!({}),
                json!({"address": "{B}/hook/s3cret", "headers": "X-Team: platform\n"}),
            ),
            (post, |_| "/hook/s3cret".into()),
            &[
                ("content-type", "application/json"),
                ("gotk-component", "kustomize-controller"),
                ("x-team", "platform"),
            ],
            |b, x| {
                at(
                    b,
                    &[
                        ("/involvedObject/kind", "Kustomization"),
                        ("/involvedObject/name", "apps"),
                        ("/involvedObject/namespace", &x.ns),
                        ("/severity", "info"),
                        ("/reason", "ReconciliationSucceeded"),
                        ("/metadata/revision", &x.revision),
                    ],
                );
            },
        ),
        // The signature is checked in the test itself (it needs the raw body).
        case(
            "generic-hmac",
            (
                json!({"address": "{B}/signed"}),
                json!({"token": "hmac-key"}),
            ),
            (post, |_| "/signed".into()),
            &[],
            |b, _| at(b, &[("/involvedObject/name", "apps")]),
        ),
        case(
            "slack",
            (
                json!({"channel": "ops", "username": "flux-bot"}),
                json!({"address": "{B}/api/chat.postMessage", "token": "xoxb-1"}),
            ),
            (post, |_| "/api/chat.postMessage".into()),
            &[
                ("authorization", "Bearer xoxb-1"),
                ("content-type", "application/json"),
            ],
            |b, x| {
                at(
                    b,
                    &[
                        ("/channel", "ops"),
                        ("/username", "flux-bot"),
                        ("/attachments/0/color", "good"),
                        ("/attachments/0/author_name", &object(x)),
                    ],
                );
                contains(b, "/attachments/0/text", "ConfigMap/");
                contains(
                    b,
                    "/attachments/0/fields",
                    &format!(r#""title":"revision","value":"{}""#, x.revision),
                );
            },
        ),
        case(
            "msteams",
            (
                json!({}),
                json!({"address": "{B}/workflows/w1/invoke?sig=s"}),
            ),
            (post, |_| "/workflows/w1/invoke?sig=s".into()),
            &[],
            |b, x| {
                at(
                    b,
                    &[
                        ("/type", "message"),
                        ("/attachments/0/content/type", "AdaptiveCard"),
                    ],
                );
                contains(b, "/attachments/0/content/body", &object(x));
            },
        ),
        case(
            "discord",
            (json!({}), json!({"address": "{B}/api/webhooks/1/tok"})),
            (post, |_| "/api/webhooks/1/tok/slack".into()),
            &[],
            |b, x| {
                at(
                    b,
                    &[
                        ("/username", "kustomize-controller"),
                        ("/attachments/0/author_name", &object(x)),
                    ],
                )
            },
        ),
        case(
            "googlechat",
            (
                json!({}),
                json!({"address": "{B}/v1/spaces/S/messages?key=k"}),
            ),
            (post, |_| "/v1/spaces/S/messages?key=k".into()),
            &[],
            |b, x| {
                at(
                    b,
                    &[
                        ("/cards/0/header/title", &object(x)),
                        ("/cards/0/header/subtitle", "kustomize-controller"),
                    ],
                )
            },
        ),
        case(
            "rocket",
            (
                json!({"channel": "#ops", "address": "{B}/hooks/a/b"}),
                Value::Null,
            ),
            (post, |_| "/hooks/a/b".into()),
            &[],
            |b, x| {
                at(
                    b,
                    &[
                        ("/channel", "#ops"),
                        ("/attachments/0/author_name", &object(x)),
                    ],
                )
            },
        ),
        case(
            "matrix",
            (
                json!({"channel": "!room:example.org", "address": "{B}"}),
                json!({"token": "syt-1"}),
            ),
            ("PUT", |_| {
                "/_matrix/client/r0/rooms/!room:example.org/send/m.room.message/".into()
            }),
            &[("authorization", "Bearer syt-1")],
            |b, x| {
                at(b, &[("/msgtype", "m.text")]);
                contains(b, "/body", &object(x));
            },
        ),
        case(
            "webex",
            (
                json!({"channel": "room1", "address": "{B}/v1/messages"}),
                json!({"token": "bot-1"}),
            ),
            (post, |_| "/v1/messages".into()),
            &[("authorization", "Bearer bot-1")],
            |b, x| {
                at(b, &[("/roomId", "room1")]);
                contains(b, "/markdown", &object(x));
            },
        ),
        case(
            "telegram",
            (
                json!({"channel": "-100123", "address": "{B}"}),
                json!({"token": "123:abc"}),
            ),
            (post, |_| "/bot123:abc/sendMessage".into()),
            &[],
            |b, _| {
                at(b, &[("/chat_id", "-100123"), ("/parse_mode", "MarkdownV2")]);
                contains(b, "/text", "apps");
            },
        ),
        case(
            "zulip",
            (
                json!({"channel": "ops/flux alerts", "username": "bot@example.com"}),
                json!({"address": "{B}/ignored/path", "password": "zulip-key"}),
            ),
            (post, |_| "/api/v1/messages".into()),
            &[
                ("authorization", &basic("bot@example.com", "zulip-key")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            |b, x| {
                at(
                    b,
                    &[
                        ("/type", "stream"),
                        ("/to", "ops"),
                        ("/topic", "flux alerts"),
                    ],
                );
                let head = format!(
                    "## Flux Status\\n\\n\u{2139}\u{fe0f} Kustomization/{}/apps",
                    x.ns
                );
                contains(b, "/content", &head);
                contains(b, "/content", &format!("* `revision`: {}", x.revision));
            },
        ),
        case(
            "lark",
            (json!({}), json!({"address": "{B}/open-apis/bot/v2/hook/x"})),
            (post, |_| "/open-apis/bot/v2/hook/x".into()),
            &[],
            |b, x| {
                at(b, &[("/msg_type", "interactive")]);
                contains(b, "/card/header/title/content", &object(x));
            },
        ),
    ]
}

fn incident_cases() -> Vec<Case> {
    let post = "POST";
    vec![
        case(
            "alertmanager",
            (
                json!({}),
                json!({"address": "{B}/api/v2/alerts", "username": "am", "password": "pw"}),
            ),
            (post, |_| "/api/v2/alerts".into()),
            &[
                ("authorization", &basic("am", "pw")),
                ("content-type", "application/json"),
            ],
            |b, x| {
                at(
                    b,
                    &[
                        ("/0/status", "firing"),
                        ("/0/labels/kind", "Kustomization"),
                        ("/0/labels/name", "apps"),
                        ("/0/labels/namespace", &x.ns),
                        ("/0/labels/severity", "info"),
                        ("/0/labels/revision", &x.revision),
                    ],
                );
                contains(b, "/0/labels/alertname", "FluxKustomization");
                contains(b, "/0/annotations/message", "ConfigMap/");
            },
        ),
        case(
            "grafana",
            (
                json!({}),
                json!({"address": "{B}/api/annotations", "token": "glsa"}),
            ),
            (post, |_| "/api/annotations".into()),
            &[("authorization", "Bearer glsa")],
            |b, x| {
                at(b, &[("/text", &object(x))]);
                contains(b, "/tags", r#""kind: Kustomization","name: apps""#);
                assert!(b["when"].is_i64(), "{b}");
            },
        ),
        case(
            "opsgenie",
            (
                json!({"address": "{B}/v2/alerts"}),
                json!({"token": "genie"}),
            ),
            (post, |_| "/v2/alerts".into()),
            &[("authorization", "GenieKey genie")],
            |b, _| {
                at(b, &[("/message", "Kustomization/apps")]);
                contains(b, "/description", "ConfigMap/");
            },
        ),
        case(
            "pagerduty",
            (
                json!({"address": "{B}", "channel": "routing-key"}),
                Value::Null,
            ),
            (post, |_| "/v2/change/enqueue".into()),
            &[],
            |b, _| {
                at(
                    b,
                    &[
                        ("/routing_key", "routing-key"),
                        ("/payload/source", "Flux kustomize-controller"),
                    ],
                );
                contains(b, "/payload/custom_details/message", "ConfigMap/");
            },
        ),
        case(
            "datadog",
            (json!({"address": "{B}"}), json!({"token": "dd-key"})),
            (post, |_| "/api/v1/events".into()),
            &[("dd-api-key", "dd-key")],
            |b, _| {
                at(
                    b,
                    &[("/source_type_name", "fluxcd"), ("/alert_type", "info")],
                );
                // Datadog tags are lower case.
                contains(b, "/tags", "kube_kind:kustomization");
                contains(b, "/tags", "kube_name:apps");
            },
        ),
    ]
}

fn git_cases() -> Vec<Case> {
    let post = "POST";
    vec![
        case(
            "githubdispatch",
            (
                json!({"address": "{B}/org/repo"}),
                json!({"token": "ghp-1"}),
            ),
            (post, |_| "/api/v3/repos/org/repo/dispatches".into()),
            &[
                ("authorization", "Bearer ghp-1"),
                ("accept", "application/vnd.github+json"),
            ],
            |b, x| {
                at(
                    b,
                    &[
                        ("/event_type", &format!("Kustomization/apps.{}", x.ns)),
                        ("/client_payload/involvedObject/name", "apps"),
                        ("/client_payload/metadata/revision", &x.revision),
                    ],
                )
            },
        ),
        case(
            "github",
            (
                json!({"address": "{B}/org/repo"}),
                json!({"token": "ghp-1"}),
            ),
            (post, |x| {
                format!("/api/v3/repos/org/repo/statuses/{}", x.sha)
            }),
            &[("authorization", "Bearer ghp-1")],
            |b, x| {
                at(
                    b,
                    &[
                        ("/state", "success"),
                        ("/context", &x.key),
                        ("/description", "reconciliation succeeded"),
                    ],
                )
            },
        ),
        case(
            "gitlab",
            (
                json!({"address": "{B}/group/project"}),
                json!({"token": "glpat-1"}),
            ),
            (post, |x| {
                format!("/api/v4/projects/group%2Fproject/statuses/{}", x.sha)
            }),
            &[("private-token", "glpat-1")],
            |b, x| {
                at(
                    b,
                    &[
                        ("/state", "success"),
                        ("/name", &x.key),
                        ("/description", "reconciliation succeeded"),
                    ],
                )
            },
        ),
        case(
            "gitea",
            (
                json!({"address": "{B}/org/repo"}),
                json!({"token": "gitea-1"}),
            ),
            (post, |x| {
                format!("/api/v1/repos/org/repo/statuses/{}", x.sha)
            }),
            &[("authorization", "token gitea-1")],
            |b, x| at(b, &[("/state", "success"), ("/context", &x.key)]),
        ),
        // The address names the repository; the API root is BITBUCKET_API_BASE_URL.
        case(
            "bitbucket",
            (
                json!({"address": "https://bitbucket.org/team/repo.git"}),
                json!({"token": "user:app-pw"}),
            ),
            (post, |x| {
                format!(
                    "/2.0/repositories/team/repo/commit/{}/statuses/build",
                    x.sha
                )
            }),
            &[("authorization", &basic("user", "app-pw"))],
            |b, x| {
                at(
                    b,
                    &[
                        ("/state", "SUCCESSFUL"),
                        ("/key", &sha1_hex(&x.key)),
                        ("/name", "kustomization/apps"),
                    ],
                )
            },
        ),
        case(
            "bitbucketserver",
            (
                json!({"address": "{B}/scm/PROJ/repo.git"}),
                json!({"token": "bbs-1"}),
            ),
            (post, |x| {
                format!(
                    "/rest/api/latest/projects/PROJ/repos/repo/commits/{}/builds",
                    x.sha
                )
            }),
            &[
                ("authorization", "Bearer bbs-1"),
                ("x-atlassian-token", "no-check"),
            ],
            |b, x| {
                at(
                    b,
                    &[
                        ("/state", "SUCCESSFUL"),
                        ("/key", &sha1_hex(&x.key)),
                        ("/name", "kustomization/apps [reconciliation succeeded]"),
                    ],
                )
            },
        ),
        case(
            "azuredevops",
            (
                json!({"address": "{B}/org/proj/_git/repo"}),
                json!({"token": "pat-1"}),
            ),
            (post, |x| {
                format!(
                    "/org/proj/_apis/git/repositories/repo/commits/{}/statuses?api-version=6.0",
                    x.sha
                )
            }),
            &[("authorization", &basic("", "pat-1"))],
            |b, x| {
                at(
                    b,
                    &[
                        ("/state", "succeeded"),
                        ("/context/genre", "fluxcd"),
                        ("/context/name", &x.key),
                    ],
                )
            },
        ),
    ]
}

/// `v` with every `{B}` in its strings replaced by `base`.
fn with_base(v: &Value, base: &str) -> Value {
    serde_json::from_str(&v.to_string().replace("{B}", base)).unwrap()
}

/// The request `case` is checked on: the first with its method and path that is about the
/// applied change set (chat and incident types) or the commit (commit-status types).
fn pick(reqs: &[Received], case: &Case, x: &Expect) -> Option<Received> {
    let path = (case.path)(x);
    reqs.iter()
        .find(|r| {
            r.method == case.method
                && r.path.starts_with(&path)
                && (body_of(r).to_string().contains("ConfigMap/")
                    || r.path.contains(&x.sha)
                    || matches!(case.ty, "grafana"))
        })
        .cloned()
}

#[tokio::test]
async fn every_provider_type_sends_the_documented_request() {
    let cases: Vec<Case> = [chat_cases(), incident_cases(), git_cases()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(cases.len(), 24);
    let sinks: Vec<WebhookSink> = cases
        .iter()
        .map(|_| WebhookSink::start(Behaviour::default()))
        .collect();
    // Flux's Bitbucket client reads its API root from this variable; nothing else here does.
    let bitbucket = cases.iter().position(|c| c.ty == "bitbucket").unwrap();
    set_env("BITBUCKET_API_BASE_URL", &sinks[bitbucket].url("/2.0"));

    let w = World::new("notify-types", &files()).await;
    for (case, sink) in cases.iter().zip(&sinks) {
        let mut spec = with_base(&case.spec, &sink.url(""));
        spec["type"] = json!(case.ty);
        if !case.secret.is_null() {
            secret(&w, case.ty, with_base(&case.secret, &sink.url(""))).await;
            spec["secretRef"] = json!({"name": case.ty});
        }
        provider(&w, case.ty, spec).await;
        alert(&w, case.ty, json!({})).await;
    }
    for case in &cases {
        wait_ready::<Provider>(&w, case.ty).await;
        wait_ready::<Alert>(&w, case.ty).await;
    }
    let providers: Api<Provider> = Api::namespaced(w.client.clone(), &w.n);

    let revision = apply_apps(&w).await;
    let sha = revision.rsplit(':').next().unwrap().to_string();
    for (case, sink) in cases.iter().zip(&sinks) {
        let uid = providers.get(case.ty).await.unwrap().uid().unwrap();
        let x = Expect {
            ns: w.n.clone(),
            sha: sha.clone(),
            revision: revision.clone(),
            key: format!("kustomization/apps/{}", uid.split('-').next().unwrap()),
        };
        let what = format!("{} request", case.ty);
        let req = within(&what, 60, || async { pick(&sink.received(), case, &x) }).await;
        for (name, value) in &case.headers {
            assert_eq!(
                req.header(name),
                Some(value.as_str()),
                "{}: {name}",
                case.ty
            );
        }
        (case.body)(&body_of(&req), &x);
        if case.ty == "generic-hmac" {
            use hmac::Mac as _;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hmac-key").unwrap();
            mac.update(&req.body);
            let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(req.header("x-signature"), Some(want.as_str()));
        }
        // Commit statuses go to the commit-status types only, and only with the SHA.
        let commit_status = [
            "github",
            "gitlab",
            "gitea",
            "bitbucket",
            "bitbucketserver",
            "azuredevops",
        ];
        if commit_status.contains(&case.ty) {
            assert!(req.path.contains(&sha), "{}: {}", case.ty, req.path);
        } else {
            for r in sink.received() {
                assert!(
                    !text(&r).contains("commit_status"),
                    "{}: {}",
                    case.ty,
                    text(&r)
                );
            }
        }
    }
    w.finish().await;
}

#[allow(unsafe_code)]
fn set_env(name: &str, value: &str) {
    // SAFETY: set once, before this test's controllers start; nextest runs each test in a
    // process of its own, and only the bitbucket notifier reads this variable.
    unsafe { std::env::set_var(name, value) }
}
