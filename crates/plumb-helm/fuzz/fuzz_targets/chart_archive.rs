//! Loading arbitrary bytes as a chart archive must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plumb_helm::load_archive(data);
});
