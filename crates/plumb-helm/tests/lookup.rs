//! `lookup` through a render: answers reach the templates, lists range, not found is an
//! empty map, failures fail the render naming the object; and Sprig's password and AES
//! functions through Helm's function set (outputs of `helm template`, Helm v3.17.3).
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::cell::RefCell;
use std::time::Instant;

use plumb_helm::template::render_str;
use plumb_helm::{
    Capabilities, HelmError, Lookup, LookupRequest, ReleaseInfo, RenderOptions, Value,
};
use serde_json::json;

/// A cluster of one ConfigMap `ns1/existing`; Secrets are forbidden.
#[derive(Default)]
struct Cluster {
    asked: RefCell<Vec<String>>,
}

impl Lookup for Cluster {
    fn lookup(&self, req: &LookupRequest, _: Instant) -> Result<serde_json::Value, HelmError> {
        self.asked.borrow_mut().push(req.to_string());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "existing", "namespace": "ns1"}, "data": {"password": "s3cret"}});
        match (req.kind.as_str(), req.namespace.as_str(), req.name.as_str()) {
            ("Secret", _, _) => Err(HelmError::Lookup {
                object: req.to_string(),
                msg: "secrets is forbidden".into(),
            }),
            ("ConfigMap", "ns1", "existing") => Ok(cm),
            ("ConfigMap", "ns1", "") => Ok(json!({"apiVersion": "v1", "kind": "ConfigMapList",
                "metadata": {}, "items": [cm]})),
            _ => Ok(json!({})),
        }
    }
}

fn render(lookup: Option<&dyn Lookup>, template: &str) -> Result<String, HelmError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Chart.yaml"),
        "apiVersion: v2\nname: lk\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/cm.yaml"), template).unwrap();
    let chart = plumb_helm::load_path(dir.path())?;
    let opts = RenderOptions {
        release: ReleaseInfo {
            name: "rel".into(),
            namespace: "ns1".into(),
            revision: 1,
            is_install: true,
        },
        capabilities: Capabilities::default(),
        lookup,
        skip_schema_validation: false,
    };
    let r = plumb_helm::render(&chart, &Value::empty_map(), &opts)?;
    Ok(r.manifests[0].content.clone())
}

const TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: out
data:
  {{- $cm := lookup "v1" "ConfigMap" .Release.Namespace "existing" }}
  found: {{ dig "data" "password" "none" $cm | quote }}
  again: {{ with lookup "v1" "ConfigMap" .Release.Namespace "existing" }}{{ .metadata.name }}{{ end }}
  missing: {{ lookup "v1" "ConfigMap" .Release.Namespace "missing" | toJson | quote }}
  names: {{ range (lookup "v1" "ConfigMap" .Release.Namespace "").items }}{{ .metadata.name }},{{ end }}
"#;

#[test]
fn lookup_answers_reach_the_templates() {
    let cluster = Cluster::default();
    let out = render(Some(&cluster), TEMPLATE).unwrap();
    assert!(out.contains("found: \"s3cret\""), "{out}");
    assert!(out.contains("again: existing"), "{out}");
    assert!(out.contains("missing: \"{}\""), "{out}");
    assert!(out.contains("names: existing,"), "{out}");
    // The repeated lookup came from the render's cache.
    assert_eq!(
        *cluster.asked.borrow(),
        [
            "v1 ConfigMap ns1/existing",
            "v1 ConfigMap ns1/missing",
            "v1 ConfigMap ns1/*"
        ]
    );
}

#[test]
fn without_a_cluster_lookup_is_empty() {
    let out = render(None, TEMPLATE).unwrap();
    assert!(out.contains("found: \"none\""), "{out}");
    assert!(out.contains("missing: \"{}\""), "{out}");
}

#[test]
fn lookup_failure_fails_the_render() {
    let cluster = Cluster::default();
    let e = render(
        Some(&cluster),
        "{{ (lookup \"v1\" \"Secret\" \"ns1\" \"db\").data }}",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("error calling lookup: lookup v1 Secret ns1/db: secrets is forbidden"),
        "{e}"
    );
    let e = render(Some(&cluster), "{{ lookup \"v1\" \"Secret\" \"ns1\" }}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wrong number of args for lookup: want 4 got 3"),
        "{e}"
    );
}

#[test]
fn password_and_aes_functions_match_helm() {
    let r = |src: &str| render_str("t", src, Value::empty_map()).unwrap();
    assert_eq!(
        r(r#"{{ derivePassword 1 "long" "password" "user" "example.com" }}"#),
        "ZedaFaxcZaso9*"
    );
    assert_eq!(
        r(r#"{{ decryptAES "k" "fUbusZmyzaXM90F4a3ukKiJNDFcaHZlLfZM/6UTljew=" }}"#),
        "hello"
    );
    assert_eq!(
        r(r#"{{ encryptAES "secretkey" "plaintext" | decryptAES "secretkey" }}"#),
        "plaintext"
    );
    let e = render_str(
        "t",
        r#"{{ decryptAES "k" "aGVsbG8=" }}"#,
        Value::empty_map(),
    )
    .unwrap_err();
    // Helm quotes the whole command after `at`; the message after it is the same.
    assert!(
        e.ends_with(
            "error calling decryptAES: runtime error: slice bounds out of range [:16] with \
             capacity 6"
        ),
        "{e}"
    );
}

/// Helm's `fromToml` (outputs of `helm template`, Helm v3.17.3).
#[test]
fn from_toml_matches_helm() {
    let r = |src: &str| render_str("t", src, Value::empty_map()).unwrap();
    assert_eq!(
        r(
            r#"{{ fromToml "a = 1\nf = 1.5\nb = true\ns = \"x\"\nl = [1, 2]\n[t]\nk = \"v\"\n[t.u]\nz = 0" | toJson }}"#
        ),
        r#"{"a":1,"b":true,"f":1.5,"l":[1,2],"s":"x","t":{"k":"v","u":{"z":0}}}"#
    );
    assert_eq!(r(r#"{{ (fromToml "a = 1").a | kindOf }}"#), "int64");
    // Bad TOML answers an `Error` key (the parser's words differ from Go's).
    assert!(r(r#"{{ (fromToml "a = ").Error }}"#).starts_with("toml: "));
}
