//! Generates the strategic-merge schema table (merge keys, patch strategies, list/map shapes and
//! namespace scoping) from the committed Kubernetes OpenAPI document, so nothing is hand-typed.

use std::io::Read;

#[path = "src/schema_convert.rs"]
#[allow(dead_code)]
mod schema_convert;

fn main() {
    let src = "schema/k8s-1.20-swagger.json.gz";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=src/schema_convert.rs");
    let file = std::fs::File::open(src).expect("open committed OpenAPI schema");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip OpenAPI schema");
    let swagger: serde_json::Value = serde_json::from_str(&text).expect("parse OpenAPI schema");
    let compact = schema_convert::compact_schema(&swagger);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(
        out.join("k8s_schema.json"),
        serde_json::to_string(&compact).expect("serialize schema"),
    )
    .expect("write schema table");
}
