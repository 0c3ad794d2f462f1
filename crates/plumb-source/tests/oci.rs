//! The OCI client against a real registry (CNCF distribution 2.8 from Debian): push in Flux's
//! format, resolve with Flux's precedence, pull with caps and digest checks, auth and TLS.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use plumb_source::ErrorKind;
use plumb_source::artifact::Limits;
use plumb_source::oci::{self, Client, ClientOptions, Credentials, OciLimits, PushMeta, RefSpec};
use plumb_testing::git::{StallServer, TlsMaterial};
use plumb_testing::registry::{Registry, RegistryOptions};

fn plain() -> Registry {
    Registry::start(RegistryOptions::default()).unwrap()
}

fn insecure() -> ClientOptions {
    ClientOptions {
        insecure: true,
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

fn client(url: &str, opts: &ClientOptions) -> Client {
    Client::new(&oci::parse_url(url).unwrap(), opts).unwrap()
}

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    d
}

fn meta(rev: &str) -> PushMeta {
    PushMeta {
        source: Some("https://github.com/example/fleet".into()),
        revision: Some(rev.into()),
        ..Default::default()
    }
}

fn push(reg: &Registry, repo_tag: &str, files: &[(&str, &str)], opts: &ClientOptions) -> String {
    let dir = tree(files);
    let c = client(&reg.oci_url(repo_tag), opts);
    c.push_artifact(dir.path(), &meta("main@sha1:0123"))
        .unwrap()
        .digest
}

#[test]
fn push_resolve_pull_round_trip() {
    let reg = plain();
    let digest = push(
        &reg,
        "app:v1.0.0",
        &[("deploy/cm.yaml", "kind: ConfigMap\n")],
        &insecure(),
    );
    let c = client(&reg.oci_url("app"), &insecure());
    let r = c.resolve(&RefSpec::Tag("v1.0.0".into())).unwrap();
    assert_eq!(r.digest, digest);
    assert_eq!(r.revision(), format!("v1.0.0@{digest}"));
    let m = c.fetch_manifest(&r.digest).unwrap();
    assert_eq!(
        m.config.media_type,
        "application/vnd.cncf.flux.config.v1+json"
    );
    assert_eq!(
        m.annotations["org.opencontainers.image.revision"],
        "main@sha1:0123"
    );
    let (layer, data) = c.fetch_layer(&m, None).unwrap();
    assert_eq!(
        layer.media_type,
        "application/vnd.cncf.flux.content.v1.tar+gzip"
    );
    let out = tempfile::tempdir().unwrap();
    oci::pull::extract_layer(&data, out.path(), Limits::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("deploy/cm.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    // Same content twice: same layer digest (deterministic archive).
    let again = tree(&[("deploy/cm.yaml", "kind: ConfigMap\n")]);
    let pushed = client(&reg.oci_url("app:again"), &insecure())
        .push_artifact(again.path(), &meta("main@sha1:0123"))
        .unwrap();
    assert_eq!(pushed.manifest.layers[0].digest, layer.digest);
    // pull: extract into a directory, or copy the layer verbatim.
    let dir = tempfile::tempdir().unwrap();
    let got = c
        .pull(
            &r,
            None,
            oci::LayerOperation::Extract,
            &dir.path().join("x"),
            Limits::default(),
        )
        .unwrap();
    assert_eq!(got.layer, layer);
    assert!(dir.path().join("x/deploy/cm.yaml").exists());
    let copy = dir.path().join("layer.tgz");
    c.pull(
        &r,
        None,
        oci::LayerOperation::Copy,
        &copy,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), data);
}

#[test]
fn precedence_semver_filter_digest_and_default_tag() {
    let reg = plain();
    let o = insecure();
    let d_latest = push(&reg, "app:latest", &[("a", "latest")], &o);
    let d1 = push(&reg, "app:1.0.0", &[("a", "1")], &o);
    let d2 = push(&reg, "app:1.2.0", &[("a", "2")], &o);
    let d_rc = push(&reg, "app:1.3.0-rc.1", &[("a", "rc")], &o);
    push(&reg, "app:2.0.0", &[("a", "two")], &o);
    let c = client(&reg.oci_url("app"), &o);
    let resolve = |s: RefSpec| c.resolve(&s).unwrap();
    let tag = |t: Option<&str>, sv: Option<&str>, f: Option<&str>, d: Option<&str>| {
        RefSpec::from_flux(t, sv, f, d)
    };
    let r = resolve(tag(None, None, None, None));
    assert_eq!(
        (r.tag.as_deref(), r.digest.as_str()),
        (Some("latest"), d_latest.as_str())
    );
    let r = resolve(tag(Some("1.0.0"), Some("1.x"), None, None));
    assert_eq!(
        (r.tag.as_deref(), r.digest.as_str()),
        (Some("1.2.0"), d2.as_str())
    );
    let r = resolve(tag(None, Some(">=1.0.0-0"), Some(".*-rc.*"), None));
    assert_eq!(
        (r.tag.as_deref(), r.digest.as_str()),
        (Some("1.3.0-rc.1"), d_rc.as_str())
    );
    let r = resolve(tag(Some("1.2.0"), Some("1.x"), None, Some(&d1)));
    assert_eq!(r.tag, None);
    assert_eq!(r.revision(), d1);
    let e = c
        .resolve(&tag(None, Some(">=3.0.0"), None, None))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RefNotFound, "{e}");
    assert!(e.to_string().contains("semver range '>=3.0.0'"), "{e}");
}

#[test]
fn unchanged_poll_is_one_manifest_head() {
    let reg = plain();
    let digest = push(&reg, "app:v1", &[("a", "1")], &insecure());
    let c = client(&reg.oci_url("app"), &insecure());
    let mark = reg.log().len();
    let r = c.resolve(&RefSpec::Tag("v1".into())).unwrap();
    assert_eq!(r.digest, digest);
    let deadline = Instant::now() + Duration::from_secs(10);
    let requests = loop {
        let log = reg.log();
        let reqs: Vec<String> = log[mark..]
            .lines()
            .filter(|l| l.contains(" /v2/") && l.contains("HTTP/1.1\""))
            .map(str::to_string)
            .collect();
        if !reqs.is_empty() || Instant::now() > deadline {
            break reqs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(
        requests[0].contains("\"HEAD /v2/app/manifests/v1 "),
        "{requests:#?}"
    );
}

#[test]
fn bad_content_gets_clear_errors() {
    let reg = plain();
    let o = insecure();
    let digest = push(&reg, "app:v1", &[("a", &"x".repeat(4096))], &o);
    let c = client(&reg.oci_url("app"), &o);
    // Unknown tag.
    let e = c.resolve(&RefSpec::Tag("nope".into())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RefNotFound);
    assert!(e.to_string().contains("tag 'nope' not found"), "{e}");
    // No layer of the wanted media type.
    let m = c.fetch_manifest(&digest).unwrap();
    let e = c.fetch_layer(&m, Some("application/x-other")).unwrap_err();
    assert!(
        e.to_string()
            .contains("no layer matching media type 'application/x-other'"),
        "{e}"
    );
    // Layer over the cap.
    let small = ClientOptions {
        limits: OciLimits {
            max_layer_bytes: 16,
            ..OciLimits::default()
        },
        ..insecure()
    };
    let e = client(&reg.oci_url("app"), &small)
        .fetch_layer(&m, None)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadContent);
    assert!(e.to_string().contains("over the limit of 16 bytes"), "{e}");
    // A blob whose stored bytes changed: digest mismatch.
    let path = reg.blob_path(&m.layers[0].digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let e = c.fetch_layer(&m, None).unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
}

fn gzip_tar_of_zeros(len: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "zeros", std::io::repeat(0).take_len(len))
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

trait TakeLen: std::io::Read + Sized {
    fn take_len(self, n: usize) -> std::io::Take<Self> {
        self.take(n as u64)
    }
}
impl<R: std::io::Read> TakeLen for R {}

#[test]
fn wrong_media_types_and_gzip_bomb() {
    let reg = plain();
    let c = client(&reg.oci_url("odd:v1"), &insecure());
    // An image index is not an artifact.
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let d = c
        .put_manifest("index", index, "application/vnd.oci.image.index.v1+json")
        .unwrap();
    let e = c.fetch_manifest(&d).unwrap_err();
    assert!(e.to_string().contains("is an image index"), "{e}");
    // A 64 MiB file of zeros in a ~64 KiB layer, against a 1 MiB extraction budget.
    let bomb = gzip_tar_of_zeros(64 << 20);
    assert!(bomb.len() < 1 << 20);
    let config = c
        .push_blob(b"{}", "application/vnd.cncf.flux.config.v1+json")
        .unwrap();
    let layer = c
        .push_blob(&bomb, "application/vnd.cncf.flux.content.v1.tar+gzip")
        .unwrap();
    let m = oci::Manifest {
        schema_version: 2,
        media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
        config,
        layers: vec![layer],
        annotations: Default::default(),
    };
    let body = serde_json::to_vec(&m).unwrap();
    let d = c
        .put_manifest("bomb", &body, "application/vnd.oci.image.manifest.v1+json")
        .unwrap();
    let fetched = c.fetch_manifest(&d).unwrap();
    let (_, data) = c.fetch_layer(&fetched, None).unwrap();
    let limits = Limits {
        max_file_size: 1 << 20,
        max_total_size: 1 << 20,
        max_entries: 100,
    };
    let out = tempfile::tempdir().unwrap();
    let e = oci::pull::extract_layer(&data, out.path(), limits).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadContent, "{e}");
    // A layer that is not gzip cannot be extracted.
    let e = oci::pull::extract_layer(b"plain text", out.path(), limits).unwrap_err();
    assert!(!e.to_string().is_empty());
}

#[test]
fn htpasswd_over_tls_with_ca() {
    let tls = TlsMaterial::generate();
    let reg = Registry::start(RegistryOptions {
        tls: Some(&tls),
        htpasswd: Some(("alice", "s3cret-pw")),
        ..Default::default()
    })
    .unwrap();
    let with = |creds: Option<(&str, &str)>, ca: Option<&str>| ClientOptions {
        ca_pem: ca.map(|c| c.as_bytes().to_vec()),
        credentials: creds.map(|(u, p)| Credentials {
            username: u.into(),
            password: p.into(),
        }),
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let good = with(Some(("alice", "s3cret-pw")), Some(&tls.ca_pem));
    let digest = push(&reg, "app:v1", &[("a", "1")], &good);
    let c = client(&reg.oci_url("app"), &good);
    assert_eq!(
        c.resolve(&RefSpec::Tag("v1".into())).unwrap().digest,
        digest
    );
    let m = c.fetch_manifest(&digest).unwrap();
    c.fetch_layer(&m, None).unwrap();
    // No credentials: 401, a clear message.
    let e = client(&reg.oci_url("app"), &with(None, Some(&tls.ca_pem)))
        .resolve(&RefSpec::Tag("v1".into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert!(e.to_string().contains("requires credentials"), "{e}");
    // Wrong password: rejected, and the password is in no message.
    let e = client(
        &reg.oci_url("app"),
        &with(Some(("alice", "hunter2-wrong")), Some(&tls.ca_pem)),
    )
    .resolve(&RefSpec::Tag("v1".into()))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    // The other CA: untrusted.
    let e = client(
        &reg.oci_url("app"),
        &with(Some(("alice", "s3cret-pw")), Some(&tls.other_ca_pem)),
    )
    .resolve(&RefSpec::Tag("v1".into()))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostUntrusted, "{e}");
}

#[test]
fn stalled_registry_times_out() {
    let stall = StallServer::start();
    let opts = ClientOptions {
        timeout: Duration::from_secs(1),
        ..insecure()
    };
    let c = client(&format!("oci://{}/app", stall.addr), &opts);
    let t = Instant::now();
    let e = c.resolve(&RefSpec::Tag("v1".into())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn bearer_token_flow_pulls_and_pushes() {
    let reg = Registry::start(RegistryOptions {
        token: Some(("bob", "t0ken-pw")),
        ..Default::default()
    })
    .unwrap();
    let creds = ClientOptions {
        credentials: Some(Credentials {
            username: "bob".into(),
            password: "t0ken-pw".into(),
        }),
        ..insecure()
    };
    let digest = push(&reg, "team/app:v1", &[("a", "1")], &creds);
    let c = client(&reg.oci_url("team/app"), &creds);
    let r = c.resolve(&RefSpec::Tag("v1".into())).unwrap();
    assert_eq!(r.digest, digest);
    let m = c.fetch_manifest(&digest).unwrap();
    c.fetch_layer(&m, None).unwrap();
    let tokens = reg.token_server().unwrap().requests();
    assert!(
        tokens
            .iter()
            .any(|t| t.scope == "repository:team/app:pull,push" && t.authorized),
        "{tokens:?}"
    );
    // One token per scope and client: the pull client asked once, then reused it.
    let pulls = tokens
        .iter()
        .filter(|t| t.scope == "repository:team/app:pull")
        .count();
    assert_eq!(pulls, 1, "{tokens:?}");
    // Anonymous: the token server refuses, a clear 401.
    let e = client(&reg.oci_url("team/app"), &insecure())
        .resolve(&RefSpec::Tag("v1".into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
}

#[test]
fn client_certificate_is_presented() {
    let tls = TlsMaterial::generate();
    let reg = Registry::start(RegistryOptions {
        tls: Some(&tls),
        client_auth: true,
        ..Default::default()
    })
    .unwrap();
    let with_cert = |crt: &str, key: &str| ClientOptions {
        ca_pem: Some(tls.ca_pem.as_bytes().to_vec()),
        client_cert: Some((crt.as_bytes().to_vec(), key.as_bytes().to_vec())),
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let good = with_cert(&tls.client_crt_pem, &tls.client_key_pem);
    let digest = push(&reg, "app:v1", &[("a", "1")], &good);
    let c = client(&reg.oci_url("app"), &good);
    assert_eq!(
        c.resolve(&RefSpec::Tag("v1".into())).unwrap().digest,
        digest
    );
    // A certificate of the other CA is refused in the handshake.
    let bad = with_cert(&tls.other_client_crt_pem, &tls.other_client_key_pem);
    let e = client(&reg.oci_url("app"), &bad)
        .resolve(&RefSpec::Tag("v1".into()))
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::HostUntrusted | ErrorKind::Unreachable),
        "{e}"
    );
}

#[test]
fn helm_pushed_charts_resolve_and_download() {
    let reg = plain();
    let work = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "1.2.0+build.7", "2.0.0-rc.1"] {
        let tgz = plumb_testing::chartrepo::package_chart(work.path(), "podinfo", v);
        let out = std::process::Command::new("helm")
            .args(["push"])
            .arg(&tgz)
            .arg(format!("oci://{}/charts", reg.host()))
            .arg("--plain-http")
            .output()
            .expect("helm (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let c = client(&reg.oci_url("charts/podinfo"), &insecure());
    let (version, r) = c.resolve_helm_chart("1.x").unwrap();
    assert_eq!(version, "1.2.0+build.7");
    assert_eq!(r.tag.as_deref(), Some("1.2.0_build.7"));
    let (version, _) = c.resolve_helm_chart("").unwrap();
    assert_eq!(version, "1.2.0+build.7", "empty is the highest stable");
    let (version, exact) = c.resolve_helm_chart("2.0.0-rc.1").unwrap();
    assert_eq!(version, "2.0.0-rc.1");
    let m = c.fetch_manifest(&exact.digest).unwrap();
    assert_eq!(
        m.config.media_type,
        "application/vnd.cncf.helm.config.v1+json"
    );
    let (_, chart) = c
        .fetch_layer(
            &m,
            Some("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
        )
        .unwrap();
    let local = std::fs::read(work.path().join("podinfo-2.0.0-rc.1.tgz")).unwrap();
    assert_eq!(chart, local, "the chart bytes helm pushed");
    let e = c.resolve_helm_chart(">=3.0.0").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RefNotFound, "{e}");
}

#[test]
fn resolve_override_reaches_a_named_host_at_a_fixed_address() {
    let reg = plain();
    let digest = push(&reg, "app:v1", &[("a.yaml", "a: 1\n")], &insecure());
    let port = reg.host().rsplit_once(':').unwrap().1.to_string();
    // A name that no DNS knows: reachable only through the override.
    let url = format!("oci://registry.plumb.invalid:{port}/app:v1");
    let unresolved = Client::new(&oci::parse_url(&url).unwrap(), &insecure())
        .unwrap()
        .resolve(&RefSpec::Tag("v1".into()));
    assert!(
        unresolved.is_err(),
        "the name does not resolve without the override"
    );
    let opts = ClientOptions {
        resolve: vec![("registry.plumb.invalid".into(), [127, 0, 0, 1].into())],
        ..insecure()
    };
    let resolved = client(&url, &opts)
        .resolve(&RefSpec::Tag("v1".into()))
        .unwrap();
    assert_eq!(resolved.digest, digest);
    // The Host header keeps the name.
    assert!(
        reg.log().contains("registry.plumb.invalid"),
        "{}",
        reg.log_tail()
    );
}
