//! Fuzzes the chart archive loader (gzip + tar, nested dependency archives, Chart.yaml and
//! values parsing) and, when the archive loads, a render with default options.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(chart) = plumb_helm::load_archive(data) else { return };
    let opts = plumb_helm::RenderOptions {
        release: plumb_helm::ReleaseInfo {
            name: "rel".into(),
            namespace: "ns".into(),
            revision: 1,
            is_install: true,
        },
        capabilities: plumb_helm::Capabilities::default(),
        lookup: None,
    };
    let _ = plumb_helm::render(&chart, &plumb_helm::Value::empty_map(), &opts);
});
