//! Fuzzes HelmRepository `index.yaml` parsing and chart resolution: the input is an index
//! (YAML or JSON), parsed with the controller's size cap, round-tripped through its stored
//! JSON form and resolved for a few ranges. Errors are fine; panics and hangs are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = plumb_helm::repo::IndexFile::parse(data, 1 << 20, "fuzz") else {
        return;
    };
    let json = index.to_canonical_json();
    let again = plumb_helm::repo::IndexFile::from_json(&json, "fuzz").expect("stored form parses");
    assert_eq!(again.to_canonical_json(), json, "stored form is stable");
    for name in index.entries.keys().take(4) {
        for range in ["", "*", ">=1.0.0 <2.0.0", "~0.1", "1.x || ^2.3.4-beta.1"] {
            let _ = index.resolve(name, range);
        }
    }
});
