//! Hostile charts (issue #14): every one fails with a clear error that names
//! the chart's template, within its budget, instead of taking the process
//! down. `scripts/hostile-helm.sh` runs the same charts through `plumb helm
//! template` under a 2 GiB address-space limit next to the reference helm.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use plumb_helm::{Capabilities, Limits, ReleaseInfo, RenderOptions, Value};

fn opts() -> RenderOptions<'static> {
    RenderOptions {
        release: ReleaseInfo {
            name: "rel".into(),
            namespace: "ns".into(),
            revision: 1,
            is_install: true,
        },
        capabilities: Capabilities::default(),
        lookup: None,
        skip_schema_validation: false,
    }
}

/// Renders a hostile fixture with the default budget, or the given one.
fn render_err(name: &str, limits: Option<Limits>) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile")
        .join(name);
    let chart = plumb_helm::load_path(&dir).unwrap();
    let user = Value::empty_map();
    let started = Instant::now();
    let r = match limits {
        Some(l) => plumb_helm::render_with_limits(&chart, &user, &opts(), l),
        None => plumb_helm::render(&chart, &user, &opts()),
    };
    let e = r
        .err()
        .unwrap_or_else(|| panic!("{name} rendered"))
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{name} took {:?}",
        started.elapsed()
    );
    assert!(
        e.contains(&format!("{name}/templates/hostile.yaml")),
        "{name}: the error names the chart's template: {e}"
    );
    assert!(e.contains("render budget exceeded"), "{name}: {e}");
    e
}

#[test]
fn deep_and_cyclic_values_fail_on_depth() {
    for name in ["deep-values", "cyclic-values"] {
        let e = render_err(name, None);
        assert!(e.contains("nested deeper than 1000"), "{e}");
    }
}

#[test]
fn loops_fail_on_operations() {
    // The default budget (200M operations) takes seconds of an optimized
    // build; scripts/hostile-helm.sh runs it. A smaller one proves the path.
    let l = Limits {
        max_ops: 5_000_000,
        ..Limits::default()
    };
    let e = render_err("nested-ranges", Some(l));
    assert!(e.contains("more than 5000000 operations"), "{e}");
}

#[test]
fn big_values_fail_on_bytes() {
    for name in ["until-memory", "doubling-string", "shared-list-blowup"] {
        let e = render_err(name, None);
        assert!(
            e.contains("bytes of values") || e.contains("operations"),
            "{name}: {e}"
        );
    }
}

#[test]
fn key_generation_loop_fails_on_time() {
    let l = Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let e = render_err("key-loop", Some(l));
    assert!(
        e.contains("took longer than 2s") || e.contains("operations"),
        "{e}"
    );
}
