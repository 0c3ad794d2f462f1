//! Fuzzes the YAML readers with arbitrary text (alias bombs, deep nesting, odd scalars):
//! kustomize's resource and kustomization parsers (fast path plus the go-yaml v3 style
//! reader on granit-parser) and Helm's values parser, then re-emits what parsed. Any panic, hang or memory blow-up is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(objs) = plumb_kustomize::parse_objects(text, "fuzz.yaml") {
        let _ = plumb_kustomize::to_yaml_stream(&objs);
    }
    let _ = plumb_kustomize::parse_kustomization(text, "fuzz.yaml");
    let _ = plumb_helm::parse_values(text);
});
