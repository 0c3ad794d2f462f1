//! Renders a chart in-process like `plumb helm template RELEASE CHART --namespace NS`
//! and prints the output; for profiling the renderer without the `plumb` binary.
//!
//! `cargo run --release -p plumb-helm --example render_chart -- RELEASE CHART NS [KUBE_VERSION]`

use std::io::Write;

// The allocator of the `plumb` binary, so profiles match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [release, chart, ns, rest @ ..] = args.as_slice() else {
        return Err("usage: render_chart RELEASE CHART NAMESPACE [KUBE_VERSION]".into());
    };
    let kube = rest.first().map_or("v1.30.0", String::as_str);
    let chart = plumb_helm::load_path(std::path::Path::new(chart))?;
    let user = plumb_helm::merge_user_values(&[], &[])?;
    let opts = plumb_helm::RenderOptions {
        release: plumb_helm::ReleaseInfo {
            name: release.clone(),
            namespace: ns.clone(),
            revision: 1,
            is_install: true,
        },
        capabilities: plumb_helm::Capabilities {
            kube_version: if kube.starts_with('v') {
                kube.to_string()
            } else {
                format!("v{kube}")
            },
            ..Default::default()
        },
        lookup: None,
    };
    let out = plumb_helm::render(&chart, &user, &opts)?;
    std::io::stdout().write_all(out.to_helm_template_output(false).as_bytes())?;
    Ok(())
}
