use serde_json::json;

use super::health::StatusEvaluator;
use super::*;
use plumb_api::kustomize::CustomHealthCheck;
use plumb_ssa::kstatus::Status;

fn cert_check() -> CustomHealthCheck {
    CustomHealthCheck {
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        in_progress: Some(
            "status.conditions.filter(e, e.type == 'Issuing').all(e, e.observedGeneration == metadata.generation && e.status == 'True')".into(),
        ),
        failed: Some(
            "status.conditions.filter(e, e.type == 'Ready').all(e, e.observedGeneration == metadata.generation && e.status == 'False')".into(),
        ),
        current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.observedGeneration == metadata.generation && e.status == 'True')".into(),
    }
}

fn cert(conditions: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "c", "generation": 2},
        "status": {"conditions": conditions}})
}

#[test]
fn health_follows_flux_order() {
    let ev = StatusEvaluator::compile_all(&[cert_check()]).unwrap();
    let ev = health::find(&ev, "cert-manager.io", "Certificate").expect("matches group/kind");
    // RFC-0009's example: `filter(...).all(...)` is vacuously true on no Issuing
    // condition, so a Certificate without one is InProgress (as in Flux).
    let no_issuing = cert(json!([{"type": "Ready", "status": "True", "observedGeneration": 2}]));
    assert_eq!(ev.evaluate(&no_issuing).status, Status::InProgress);
    let ready = cert(json!([
        {"type": "Issuing", "status": "False", "observedGeneration": 2},
        {"type": "Ready", "status": "True", "observedGeneration": 2}
    ]));
    assert_eq!(ev.evaluate(&ready).status, Status::Current);
    let failed = cert(json!([
        {"type": "Issuing", "status": "False", "observedGeneration": 2},
        {"type": "Ready", "status": "False", "observedGeneration": 2}
    ]));
    assert_eq!(ev.evaluate(&failed).status, Status::Failed);
    // inProgress is evaluated first: Issuing=True wins over Ready=True.
    let issuing = cert(json!([
        {"type": "Issuing", "status": "True", "observedGeneration": 2},
        {"type": "Ready", "status": "True", "observedGeneration": 2}
    ]));
    assert_eq!(ev.evaluate(&issuing).status, Status::InProgress);
    // Ready for an older generation: neither failed nor current is true.
    let stale = cert(json!([
        {"type": "Issuing", "status": "False", "observedGeneration": 2},
        {"type": "Ready", "status": "True", "observedGeneration": 1}
    ]));
    assert_eq!(ev.evaluate(&stale).status, Status::InProgress);
    // status.observedGeneration behind metadata.generation: InProgress, nothing evaluated.
    let mut behind = ready.clone();
    behind["status"]["observedGeneration"] = json!(1);
    assert_eq!(ev.evaluate(&behind).status, Status::InProgress);
    assert!(health::find(&[], "cert-manager.io", "Certificate").is_none());
}

#[test]
fn custom_resource_without_conditions() {
    let check = CustomHealthCheck {
        api_version: "example.com/v1alpha1".into(),
        kind: "Widget".into(),
        in_progress: None,
        failed: Some("status.phase == 'Broken'".into()),
        current: "has(status.phase) && status.phase == 'Done'".into(),
    };
    let evs = StatusEvaluator::compile_all(&[check]).unwrap();
    // The version of apiVersion is not compared (Flux matches group and kind).
    let ev = health::find(&evs, "example.com", "Widget").unwrap();
    let w = |phase: &str| json!({"metadata": {"generation": 1}, "status": {"phase": phase}});
    assert_eq!(ev.evaluate(&w("Done")).status, Status::Current);
    assert_eq!(ev.evaluate(&w("Pending")).status, Status::InProgress);
    let broken = ev.evaluate(&w("Broken"));
    assert_eq!(broken.status, Status::Failed);
    assert!(broken.message.contains("failed"), "{}", broken.message);
    // No status at all: `status` is an undeclared reference, an evaluation error: Flux's
    // Unknown (pending until the timeout) with a message naming the expression.
    let none = ev.evaluate(&json!({"metadata": {"generation": 1}}));
    assert_eq!(none.status, Status::InProgress);
    assert!(
        none.message.contains("status.phase == 'Broken'"),
        "{}",
        none.message
    );
}

#[test]
fn bad_expressions_are_clear_errors() {
    let mut check = cert_check();
    check.in_progress = Some("foo.".into());
    let err = StatusEvaluator::compile_all(&[check]).unwrap_err();
    assert!(
        err.starts_with("failed to create custom status reader for healthchecks[0]: failed to parse the expression InProgress: failed to parse the CEL expression 'foo.'"),
        "{err}"
    );
    let mut check = cert_check();
    check.current = String::new();
    let err = StatusEvaluator::compile_all(&[check]).unwrap_err();
    assert!(err.contains("expression Current not specified"), "{err}");
    assert!(Expression::compile("", None).is_err());
    let long = "a".repeat(MAX_SOURCE_BYTES + 1);
    assert!(matches!(
        Expression::compile(&long, None),
        Err(CelError::Parse { .. })
    ));
    let deep = format!("{}true{}", "(".repeat(500), ")".repeat(500));
    assert!(
        Expression::compile(&deep, None).is_err(),
        "bracket depth budget"
    );
    // A long flat chain of operators within the source budget must neither overflow the
    // stack of a 2 MiB thread (tokio's default) nor be accepted silently.
    let chain = std::iter::repeat_n("a", 2000)
        .collect::<Vec<_>>()
        .join(" + ");
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Expression::compile(&chain, None).map(|_| ()))
        .unwrap()
        .join()
        .unwrap();
    assert!(r.is_err(), "parser recursion budget");
    let nested = "a.all(x, a.all(y, a.all(z, x == y && y == z)))";
    let err = Expression::compile(nested, None).unwrap_err().to_string();
    assert!(err.contains("nested 3 deep"), "{err}");
    assert!(Expression::compile("a.all(x, a.exists(y, x == y))", None).is_ok());
}

#[test]
fn non_boolean_and_runtime_errors() {
    let e = Expression::compile("status.phase", None).unwrap();
    let obj = json!({"status": {"phase": "Done"}});
    let err = e.eval_bool_fields(&obj).unwrap_err();
    assert_eq!(
        err,
        CelError::NotBoolean {
            expr: "status.phase".into(),
            got: "string".into()
        }
    );
    let e = Expression::compile("status.missing == 'x'", None).unwrap();
    let err = e.eval_bool_fields(&obj).unwrap_err().to_string();
    assert!(
        err.starts_with("failed to evaluate the CEL expression 'status.missing == 'x''"),
        "{err}"
    );
    let e = Expression::compile("1 / 0 == 1", None).unwrap();
    assert!(e.eval_bool(&[]).is_err());
}

#[test]
fn declared_variables() {
    let vars = ["self", "dep"];
    let e = Expression::compile(
        "dep.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True') && self.metadata.name != ''",
        Some(&vars),
    )
    .unwrap();
    let me = json!({"metadata": {"name": "app"}});
    let dep = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    assert!(e.eval_bool(&[("self", &me), ("dep", &dep)]).unwrap());
    let dep = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    assert!(!e.eval_bool(&[("self", &me), ("dep", &dep)]).unwrap());
    let err = Expression::compile(
        "deps.metadata.generation == self.metadata.generation",
        Some(&vars),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("undeclared reference to 'deps'"), "{err}");
    // Comprehension variables are bound, not free.
    assert!(Expression::compile("dep.items.all(i, i > 0)", Some(&vars)).is_ok());
    // Extensions: strings.
    let e = Expression::compile(
        "res.metadata.name.startsWith('app') && 'A'.lowerAscii() == 'a'",
        Some(&["res", "req"]),
    )
    .unwrap();
    assert!(
        e.eval_bool(&[("res", &json!({"metadata": {"name": "app-1"}}))])
            .unwrap()
    );
}

#[test]
fn input_budget() {
    let e = Expression::compile("size(req.data) > 0", Some(&["req"])).unwrap();
    let big = json!({"data": "x".repeat(MAX_INPUT_BYTES)});
    let err = e.eval_bool(&[("req", &big)]).unwrap_err().to_string();
    assert!(err.contains("over the budget"), "{err}");
}
