//! Renders a chart in-process like `plumb helm template RELEASE CHART --namespace NS`
//! and prints the output; for profiling the renderer without the `plumb` binary.
//!
//! `cargo run --release -p plumb-helm --example render_chart -- RELEASE CHART NS [KUBE_VERSION] [-f VALUES]...`

use std::io::Write;

// The allocator of the `plumb` binary, so profiles match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `-f FILE` anywhere: values files, as `helm template -f`.
    let mut files = Vec::new();
    while let Some(i) = args.iter().position(|a| a == "-f") {
        let Some(path) = args.get(i + 1).cloned() else {
            return Err("-f needs a file".into());
        };
        files.push(plumb_helm::parse_values(&std::fs::read_to_string(&path)?)?);
        args.drain(i..i + 2);
    }
    let [release, chart, ns, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: render_chart RELEASE CHART NAMESPACE [KUBE_VERSION] [-f VALUES]...".into(),
        );
    };
    let kube = rest.first().map_or("v1.30.0", String::as_str);
    let chart = plumb_helm::load_path(std::path::Path::new(chart))?;
    let user = plumb_helm::merge_user_values(&files, &[])?;
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
        skip_schema_validation: false,
    };
    let out = plumb_helm::render(&chart, &user, &opts)?;
    std::io::stdout().write_all(out.to_helm_template_output(false).as_bytes())?;
    Ok(())
}
