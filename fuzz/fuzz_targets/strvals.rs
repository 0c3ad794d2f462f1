//! Fuzzes `--set` / `valuesFrom.targetPath` parsing (Helm's strvals) into an existing map.
//! Errors are fine but must never quote the input (Secret values go through it): without
//! its digits, every message is one of a fixed set. Panics, hangs and stack overflows are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FORMS: &[&str] = &[
    "assignment  has no '=' and no value",
    "the key of assignment  has no closing bracket",
    "the key of assignment  has an invalid index",
    "the key of assignment  has an index above ",
    "the key of assignment  is empty",
    "the key of assignment  is deeper than  levels",
];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let target = plumb_helm::parse_values("a: {b: 1}\nl: [x]\n").expect("seed values");
    if let Err(e) = plumb_helm::strvals::parse_into(s, &target) {
        let form: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
        assert!(FORMS.contains(&form.as_str()), "unexpected error text: {e}");
    }
    let _ = target.to_json();
});
