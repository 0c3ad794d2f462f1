//! Chart-level behaviour on the fixture chart, without the reference binary.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::io::Write;
use std::path::Path;

use plumb_helm::{Capabilities, HelmError, ReleaseInfo, RenderOptions, Rendered, Value};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/features")
}

fn opts() -> RenderOptions<'static> {
    RenderOptions {
        release: ReleaseInfo {
            name: "rel".into(),
            namespace: "ns1".into(),
            revision: 1,
            is_install: true,
        },
        capabilities: Capabilities {
            kube_version: "v1.30.0".into(),
            ..Default::default()
        },
        lookup: None,
        skip_schema_validation: false,
    }
}

fn render_with(values: &str) -> Result<Rendered, HelmError> {
    let chart = plumb_helm::load_path(&fixture())?;
    let v = plumb_helm::parse_values(values)?;
    plumb_helm::render(&chart, &v, &opts())
}

fn doc<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a str {
    &r.manifests
        .iter()
        .find(|m| m.kind == kind && m.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
        .content
}

#[test]
fn subchart_alias_condition_and_library() {
    let r = render_with("").unwrap();
    let names: Vec<_> = r.manifests.iter().map(|m| m.name.as_str()).collect();
    assert!(
        names.contains(&"rel-subalias"),
        "aliased subchart renders under its alias: {names:?}"
    );
    assert!(
        !names.contains(&"should-not-render"),
        "condition false disables the subchart"
    );
    assert!(!names.contains(&"library-templates-do-not-render"));
    let sub = doc(&r, "ConfigMap", "rel-subalias");
    assert!(
        sub.contains("greeting: \"hello from parent\""),
        "parent values override: {sub}"
    );
    assert!(sub.contains("region: \"eu-west-1\""), "globals flow down");
    assert!(
        sub.contains(r#"shared: "{\"a\":\"parent\",\"b\":\"child-only\"}""#),
        "globals merge: {sub}"
    );
}

#[test]
fn null_deletes_defaults() {
    let r = render_with("removeMe: null\nnested:\n  drop: null\n").unwrap();
    let cm = doc(&r, "ConfigMap", "rel-features");
    assert!(cm.contains("removed: \"deleted\""));
    assert!(cm.contains("nestedKeys: \"keep\""), "{cm}");
}

#[test]
fn install_order_hooks_notes_and_crds() {
    let r = render_with("").unwrap();
    let kinds: Vec<_> = r.manifests.iter().map(|m| m.kind.as_str()).collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos("Secret") < pos("ConfigMap"));
    assert!(pos("ClusterRole") < pos("Service"));
    assert_eq!(
        kinds.last(),
        Some(&"Widget"),
        "unknown kinds go last: {kinds:?}"
    );
    assert_eq!(r.hooks.len(), 1);
    let h = &r.hooks[0];
    assert_eq!(h.events, vec!["pre-install", "pre-upgrade"]);
    assert_eq!(h.weight, -5);
    assert_eq!(
        h.delete_policies,
        vec!["before-hook-creation", "hook-succeeded"]
    );
    assert_eq!(r.notes.trim(), "Installed rel (features 1.2.3).");
    assert_eq!(r.crds.len(), 1);
    assert_eq!(r.crds[0].0, "features/crds/widget.yaml");
    let out = r.to_helm_template_output(true);
    assert!(out.starts_with("---\n# Source: features/crds/widget.yaml\n"));
}

#[test]
fn schema_violations_are_reported() {
    let err = render_with("port: -1\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("schema"), "{msg}");
    assert!(msg.contains("port"), "{msg}");
    // `disableSchemaValidation` / `--skip-schema-validation`: the same values render.
    let chart = plumb_helm::load_path(&fixture()).unwrap();
    let v = plumb_helm::parse_values("port: -1\n").unwrap();
    let skip = RenderOptions {
        skip_schema_validation: true,
        ..opts()
    };
    assert!(plumb_helm::render(&chart, &v, &skip).is_ok());
}

#[test]
fn template_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("bad");
    std::fs::create_dir_all(c.join("templates")).unwrap();
    std::fs::write(
        c.join("Chart.yaml"),
        "apiVersion: v2\nname: bad\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(c.join("templates/a.yaml"), "x: 1\ny: {{ .Values.a.b }}\n").unwrap();
    let chart = plumb_helm::load_path(&c).unwrap();
    let err = plumb_helm::render(&chart, &Value::empty_map(), &opts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: bad/templates/a.yaml:2:13: executing \"bad/templates/a.yaml\" at <.Values.a.b>: nil pointer evaluating interface {}.b"
    );
}

fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name to build hostile archives.
        let name = h.as_old_mut().name.as_mut();
        name[..p.len()].copy_from_slice(p.as_bytes());
        h.set_cksum();
        b.append(&h, *d).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn archives_load_and_hostile_ones_are_rejected() {
    let good = tgz(&[
        ("c/Chart.yaml", b"apiVersion: v2\nname: c\nversion: 0.1.0\n"),
        (
            "c/templates/cm.yaml",
            b"kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: x\n",
        ),
    ]);
    let c = plumb_helm::load_archive(&good).unwrap();
    assert_eq!(c.name, "c");
    assert_eq!(c.templates.len(), 1);

    let traversal = tgz(&[
        ("c/Chart.yaml", b"apiVersion: v2\nname: c\nversion: 0.1.0\n"),
        ("c/../../etc/x", b"boom"),
    ]);
    let e = plumb_helm::load_archive(&traversal)
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the base directory"), "{e}");

    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "c/link", "/etc/passwd").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let e = plumb_helm::load_archive(&gz.finish().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");

    assert!(plumb_helm::load_archive(b"not gzip at all").is_err());
}

#[test]
fn missing_dependency_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("Chart.yaml"),
        "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: gone\n  version: 1.0.0\n",
    )
    .unwrap();
    let chart = plumb_helm::load_path(&c).unwrap();
    let e = plumb_helm::render(&chart, &Value::empty_map(), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing in charts/ directory: gone"), "{e}");
}

#[test]
fn fail_and_required_read_like_helm() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("bad");
    std::fs::create_dir_all(c.join("templates")).unwrap();
    std::fs::write(
        c.join("Chart.yaml"),
        "apiVersion: v2\nname: bad\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        c.join("templates/a.yaml"),
        "{{ define \"h\" }}{{ required \"need x\" .Values.x }}{{ end }}x: {{ include \"h\" . }}\n",
    )
    .unwrap();
    let chart = plumb_helm::load_path(&c).unwrap();
    let err = plumb_helm::render(&chart, &Value::empty_map(), &opts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "execution error at (bad/templates/a.yaml:1:64): need x"
    );
}

#[test]
fn render_archive_is_send_friendly() {
    fn assert_send<T: Send>(_: &T) {}
    let archive = tgz(&[
        ("c/Chart.yaml", b"apiVersion: v2\nname: c\nversion: 0.1.0\n"),
        ("c/values.yaml", b"k: 1\n"),
        (
            "c/templates/cm.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  k: {{ .Values.k | quote }}\n  m: {{ .Values.m | quote }}\n",
        ),
    ]);
    let values = serde_json::json!({"m": 2000000});
    let r = plumb_helm::render_archive(&archive, &values, &opts()).unwrap();
    assert_send(&r);
    assert_eq!(r.manifests.len(), 1);
    assert!(
        r.manifests[0].content.contains("m: \"2e+06\""),
        "{}",
        r.manifests[0].content
    );
}

/// A throwaway chart from (path, content) pairs.
fn temp_chart(files: &[(&str, &str)]) -> (tempfile::TempDir, plumb_helm::Chart) {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("t");
    for (p, body) in files {
        let f = c.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, body).unwrap();
    }
    let chart = plumb_helm::load_path(&c).unwrap();
    (dir, chart)
}

#[test]
fn schema_errors_win_and_the_first_bad_file_in_path_order_is_named() {
    // Schema validation and the YAML read of rendered files run beside the
    // template executor; the error reported must still be Helm's.
    let (_d, chart) = temp_chart(&[
        ("Chart.yaml", "apiVersion: v2\nname: t\nversion: 0.1.0\n"),
        // The bare `$schema` URL some charts use (prometheus) is validated too.
        (
            "values.schema.json",
            r#"{"$schema": "http://json-schema.org/schema#", "type": "object",
                "properties": {"port": {"type": "integer", "minimum": 1}}}"#,
        ),
        ("values.yaml", "port: 80\n"),
        ("templates/a.yaml", "a: [\n"),
        ("templates/b.yaml", "b: {\n"),
        (
            "templates/c.yaml",
            "{{ if .Values.boom }}{{ fail \"boom\" }}{{ end }}\n",
        ),
    ]);
    let render = |values: &str| {
        let v = plumb_helm::parse_values(values).unwrap();
        plumb_helm::render(&chart, &v, &opts()).unwrap_err()
    };
    let err = render("port: 0\nboom: true\n");
    assert!(matches!(err, HelmError::Schema { .. }), "{err}");
    assert!(err.to_string().contains("port"), "{err}");
    let err = render("boom: true\n");
    assert!(err.to_string().contains("boom"), "{err}");
    let err = render("");
    assert!(matches!(err, HelmError::Yaml { .. }), "{err}");
    assert!(err.to_string().contains("t/templates/a.yaml"), "{err}");
}

#[test]
fn generated_keys_are_never_handed_out_twice() {
    // Keys may come from the helper that makes them ahead; none may be handed
    // out twice, in one render or across renders of the same process.
    let (_d, chart) = temp_chart(&[
        ("Chart.yaml", "apiVersion: v2\nname: t\nversion: 0.1.0\n"),
        (
            "templates/certs.yaml",
            concat!(
                "{{- $ca := genCA \"ca\" 30 }}\n",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: certs\ndata:\n",
                "  ca: {{ $ca.Key | b64enc }}\n",
                "{{- range $i := until 4 }}\n",
                "  {{- $c := genSignedCert (printf \"c%d\" $i) nil nil 30 $ca }}\n",
                "  k{{ $i }}: {{ $c.Key | b64enc }}\n",
                "{{- end }}\n",
                "{{- if false }}{{ genCA \"never\" 1 }}{{ end }}\n",
            ),
        ),
    ]);
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let r = plumb_helm::render(&chart, &Value::empty_map(), &opts()).unwrap();
        let cm = doc(&r, "ConfigMap", "certs");
        let found: Vec<&str> = cm
            .lines()
            .filter_map(|l| l.trim().split_once(": ").map(|(_, v)| v))
            .filter(|v| v.len() > 1000)
            .collect();
        assert_eq!(found.len(), 5, "{cm}");
        for k in found {
            assert!(keys.insert(k.to_string()), "a key was handed out twice");
        }
    }
}

#[test]
fn large_values_and_template_parses_made_while_loading() {
    // values.yaml over the threshold is read on a helper thread while the
    // templates parse; the results and errors must be the same as inline.
    let mut big = String::from("extra:\n  enabled: false\nlist:\n");
    for i in 0..3000 {
        big.push_str(&format!("  - name: item-{i}\n    port: {i}\n"));
    }
    let (_d, chart) = temp_chart(&[
        (
            "Chart.yaml",
            "apiVersion: v2\nname: t\nversion: 0.1.0\ndependencies:\n  - name: extra\n    version: 0.1.0\n    condition: extra.enabled\n",
        ),
        ("values.yaml", &big),
        (
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  n: {{ len .Values.list | quote }}\n  last: {{ (index .Values.list 2999).port | quote }}\n",
        ),
        (
            "charts/extra/Chart.yaml",
            "apiVersion: v2\nname: extra\nversion: 0.1.0\n",
        ),
        // A disabled subchart's broken template is never parsed by Helm.
        ("charts/extra/templates/broken.yaml", "{{ if }}\n"),
    ]);
    let r = plumb_helm::render(&chart, &Value::empty_map(), &opts()).unwrap();
    let cm = doc(&r, "ConfigMap", "cm");
    assert!(
        cm.contains("n: \"3000\"") && cm.contains("last: \"2999\""),
        "{cm}"
    );
    let v = plumb_helm::parse_values("extra:\n  enabled: true\n").unwrap();
    let err = plumb_helm::render(&chart, &v, &opts()).unwrap_err();
    assert!(
        err.to_string()
            .contains("t/charts/extra/templates/broken.yaml:1"),
        "{err}"
    );

    big.push_str("  - [unclosed\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("Chart.yaml"),
        "apiVersion: v2\nname: b\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("values.yaml"), &big).unwrap();
    let err = plumb_helm::load_path(dir.path()).unwrap_err();
    assert!(err.to_string().contains("cannot load values.yaml"), "{err}");
}
