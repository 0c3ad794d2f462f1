//! Fuzzes the template language alone (plumb-template: parser, executor, Sprig), no Helm:
//! the input is a template source run against small data within the default render budget.
//! Errors are fine; panics, hangs, stack overflows and out-of-memory aborts are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let values = serde_json::json!({
        "name": "web", "replicas": 2, "labels": {"app": "web"}, "list": [1, "two", null, 2.5],
    });
    let limits = plumb_template::budget::Limits {
        max_ops: 2_000_000,
        max_bytes: 64 << 20,
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    let _budget = limits.install();
    let _ = plumb_template::render_str("t", src, plumb_template::Value::from_json(&values));
});
