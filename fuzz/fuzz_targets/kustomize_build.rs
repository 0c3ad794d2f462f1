//! Fuzzes the kustomize entry points: parsing a kustomization, parsing a resource
//! stream, and a full build of a directory whose kustomization.yaml is the input (with one
//! resource and one patch file next to it). Any panic is a bug; errors are fine.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn workdir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("plumb-kustomize-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create fuzz dir");
        std::fs::write(
            d.join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n",
        )
        .expect("write resource");
        std::fs::write(
            d.join("patch.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n",
        )
        .expect("write patch");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = plumb_kustomize::parse_kustomization(text, "fuzz.yaml");
    let _ = plumb_kustomize::parse_objects(text, "fuzz.yaml");
    let dir = workdir();
    if std::fs::write(dir.join("kustomization.yaml"), text).is_ok() {
        let opts = plumb_kustomize::BuildOptions {
            max_file_bytes: 1 << 20,
            max_resources: 1000,
            ..Default::default()
        };
        if let Ok(objs) = plumb_kustomize::build(dir, dir, &opts) {
            let _ = plumb_kustomize::to_yaml_stream(&objs);
        }
    }
});
