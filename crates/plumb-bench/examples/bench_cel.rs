//! Cost of a CEL health check per object next to the plain kstatus check, in-process (no
//! control plane): a cert-manager `Certificate` as the API server returns it (managed
//! fields, three conditions, ~3 KiB of JSON), judged `ROUNDS` times by
//! - kstatus (`plumb_ssa::kstatus::compute`);
//! - one CEL expression (`status.conditions.exists(...)`);
//! - Flux's RFC-0009 Certificate entry (`inProgress`, `failed`, `current`), all three
//!   evaluated, as for a Certificate that is Ready.
//!
//! `cargo run --release -p plumb-bench --example bench_cel [evaluations]` (default 10,000
//! per round, 15 rounds): prints the median per-object time of each and the ratios.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

use std::hint::black_box;
use std::time::{Duration, Instant};

use plumb_api::kustomize::CustomHealthCheck;
use plumb_controller::cel::Expression;
use plumb_controller::cel::health::StatusEvaluator;
use serde_json::{Value, json};

const ROUNDS: usize = 15;

fn certificate() -> Value {
    let cond = |t: &str, s: &str| {
        json!({"type": t, "status": s, "observedGeneration": 3, "reason": "Ready",
            "message": "Certificate is up to date and has not expired",
            "lastTransitionTime": "2026-11-30T10:00:00Z"})
    };
    let field = |m: &str| {
        json!({"manager": m, "operation": "Apply", "apiVersion": "cert-manager.io/v1",
            "time": "2026-11-30T10:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/name": {}}},
                "f:spec": {"f:dnsNames": {}, "f:issuerRef": {"f:kind": {}, "f:name": {}},
                "f:secretName": {}}}})
    };
    json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "web-tls", "namespace": "apps", "generation": 3,
            "uid": "7d1c2a8e-5a0b-4c55-9b7e-0d6f4b9f1e11", "resourceVersion": "184467",
            "creationTimestamp": "2026-11-01T09:00:00Z",
            "labels": {"app.kubernetes.io/name": "web", "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
            "managedFields": [field("kustomize-controller"), field("cert-manager-certificates-trigger"),
                field("cert-manager-certificates-readiness")]},
        "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com", "www.example.com"],
            "issuerRef": {"kind": "ClusterIssuer", "name": "letsencrypt"},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}},
        "status": {"conditions": [cond("Issuing", "False"), cond("Ready", "True")],
            "notAfter": "2027-02-28T10:00:00Z", "notBefore": "2026-11-30T10:00:00Z",
            "renewalTime": "2027-01-29T10:00:00Z", "revision": 4}
    })
}

/// Median over `ROUNDS` rounds of the time per call of `f`, called `n` times a round.
fn per_call(n: usize, mut f: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed() / n as u32
        })
        .collect();
    rounds.sort();
    rounds[ROUNDS / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let obj = certificate();
    let size = serde_json::to_vec(&obj).unwrap().len();
    let check = CustomHealthCheck {
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        in_progress: Some("status.conditions.filter(e, e.type == 'Issuing').all(e, e.observedGeneration == metadata.generation && e.status == 'True')".into()),
        failed: Some("status.conditions.filter(e, e.type == 'Ready').all(e, e.observedGeneration == metadata.generation && e.status == 'False')".into()),
        current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.observedGeneration == metadata.generation && e.status == 'True')".into(),
    };
    let evaluators = StatusEvaluator::compile_all(&[check]).unwrap();
    let ev = &evaluators[0];
    assert_eq!(
        ev.evaluate(&obj).status,
        plumb_ssa::kstatus::Status::Current
    );
    let one = Expression::compile(
        "status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
        None,
    )
    .unwrap();
    assert!(one.eval_bool_fields(&obj).unwrap());

    let kstatus = per_call(n, || {
        black_box(plumb_ssa::kstatus::compute(black_box(&obj)));
    });
    let single = per_call(n, || {
        black_box(one.eval_bool_fields(black_box(&obj)).unwrap());
    });
    let flux = per_call(n, || {
        black_box(ev.evaluate(black_box(&obj)));
    });
    let compile = per_call(n.min(1_000), || {
        black_box(
            Expression::compile(
                black_box("status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"),
                None,
            )
            .unwrap(),
        );
    });
    println!("object {size} bytes of JSON, {n} evaluations x {ROUNDS} rounds, median per object:");
    println!("  kstatus                         {kstatus:>10.2?}");
    println!(
        "  CEL, one expression             {single:>10.2?}  ({:.1}x kstatus)",
        single.as_secs_f64() / kstatus.as_secs_f64()
    );
    println!(
        "  CEL, Flux's Certificate entry   {flux:>10.2?}  ({:.1}x kstatus; 3 expressions)",
        flux.as_secs_f64() / kstatus.as_secs_f64()
    );
    println!("  compile one expression (uncached) {compile:>8.2?}");
}
