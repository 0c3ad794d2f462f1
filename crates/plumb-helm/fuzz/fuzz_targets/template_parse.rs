//! Parsing arbitrary template source must return Ok or Err, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let _ = plumb_helm::template::parse::parse(src, &|name: &str| name.len() < 12);
    }
});
