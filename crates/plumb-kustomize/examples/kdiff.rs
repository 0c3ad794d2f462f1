// Differential harness (not committed): renders every corpus case and prints YAML or the error.
fn main() {
    let corpus = std::env::args().nth(1).expect("corpus dir");
    let mut dirs = Vec::new();
    for sub in ["cases", "errors"] {
        let mut names: Vec<_> = std::fs::read_dir(format!("{corpus}/{sub}")).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for d in names {
            let meta: serde_json::Value = ["case.json", "expected_error.json"].iter().find_map(|f| std::fs::read_to_string(d.join(f)).ok()).map(|t| serde_json::from_str(&t).unwrap()).unwrap();
            let bd = meta["build_dir"].as_str().unwrap().to_string();
            dirs.push((d.clone(), d.join("input").join(bd)));
        }
    }
    for extra in std::env::args().skip(2) {
        dirs.push((extra.clone().into(), extra.into()));
    }
    let opts = plumb_kustomize::BuildOptions::default();
    for (id, dir) in dirs {
        println!("=== {}", id.display());
        match plumb_kustomize::build(&dir, std::path::Path::new("/"), &opts) {
            Ok(objs) => print!("{}", plumb_kustomize::to_yaml_stream(&objs)),
            Err(e) => println!("ERR: {e}"),
        }
    }
}
