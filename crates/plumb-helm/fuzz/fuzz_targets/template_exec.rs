//! Parsing and executing arbitrary templates (with Helm's functions) against
//! fixed values must not panic; recursion and output are bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let values = plumb_helm::encode::yaml_to_value("a: 1\nb: [x, y]\nc: {d: e}\ns: str\n")
            .unwrap_or_default();
        let _ = plumb_helm::template::render_str("fuzz", src, values);
    }
});
