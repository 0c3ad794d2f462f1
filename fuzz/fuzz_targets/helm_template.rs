//! Fuzzes the Go-template parser and executor with Helm's function set: the input is a
//! template source rendered against a small values map. Errors are fine; panics and hangs are
//! bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let values = serde_json::json!({
        "Values": {"name": "web", "replicas": 2, "labels": {"app": "web"}, "list": [1, "two", null]},
        "Release": {"Name": "rel", "Namespace": "ns"},
    });
    let _ = plumb_helm::template::render_str(
        "fuzz/templates/t.yaml",
        src,
        plumb_helm::Value::from_json(&values),
    );
});
