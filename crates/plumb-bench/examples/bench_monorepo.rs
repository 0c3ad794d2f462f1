//! A monorepo commit that touches one app: what it costs with plumb's skip of unchanged
//! Kustomizations and without it (every Kustomization opted out, Flux's behaviour).
//!
//! Setup: a repository with N app directories (`apps/app-<i>/`: kustomization.yaml and one
//! ConfigMap), served over HTTP; plumb in-process with a request-counting client and the
//! Receiver; (1) N Kustomizations on one GitRepository, (2) one ArtifactGenerator splitting
//! the repository into N ExternalArtifacts and N Kustomizations on them. For each setup and
//! mode, a commit touching app 7 is delivered through the Receiver webhook; printed: push to
//! Ready of the touched app, push until all N record the new revision, renders (and so apply
//! sets) by the controller's own count, and API requests by kind for the touched app and
//! for the other N-1.
//!
//! `PLUMB_TEST_ENV=/path/env.json cargo run --release -p plumb-bench --example bench_monorepo [N]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

#[path = "../../plumb-controller/tests/it/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization, Receiver};
use plumb_bench::cm;
use plumb_controller::{Context, kustomization::build_counts, receiver};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;

const TOUCHED: usize = 7;

/// Requests by object name, then by kind of request (apply, dry-run, status patch, verb).
type Counts = Arc<Mutex<HashMap<String, BTreeMap<String, u64>>>>;

fn classify(req: &http::Request<kube::client::Body>) -> (String, String) {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    let segs: Vec<&str> = path.split('/').collect();
    let name = segs
        .iter()
        .position(|s| *s == "configmaps" || *s == "kustomizations")
        .and_then(|i| segs.get(i + 1))
        .map_or_else(|| "(other)".to_string(), |s| s.to_string());
    let apply = req
        .headers()
        .get("content-type")
        .is_some_and(|c| c.as_bytes().starts_with(b"application/apply-patch"));
    let what = if query.contains("dryRun") {
        "dry-run".to_string()
    } else if req.method() == "PATCH" && path.ends_with("/status") {
        "status patch".to_string()
    } else if apply {
        "apply".to_string()
    } else if query.contains("watch=true") {
        "WATCH".to_string()
    } else {
        req.method().to_string()
    };
    (name, what)
}

struct Bench {
    admin: kube::Client,
    ns: String,
    ctx: Arc<Context>,
    counts: Counts,
    repo: TestRepo,
    hook: (std::net::SocketAddr, String, String),
    n: usize,
    commits: usize,
}

/// One measured commit.
struct Row {
    ready: Duration,
    all: Duration,
    rendered_touched: u64,
    rendered_others: u64,
    skipped: u64,
    touched: BTreeMap<String, u64>,
    others: BTreeMap<String, u64>,
}

impl Bench {
    fn ks(&self) -> Api<Kustomization> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Kustomizations named `<prefix>app-<i>` whose lastAppliedRevision is `rev` (or whose
    /// source artifact is current, for `rev` = None: every one Ready).
    async fn at(&self, prefix: &str, rev: Option<&str>) -> usize {
        // From the API server's watch cache (resourceVersion 0): a quorum list of 500
        // objects every poll would load the server the measurement runs on.
        let Ok(list) = self.ks().list(&ListParams::default().match_any()).await else {
            return 0;
        };
        list.items
            .iter()
            .filter(|k| {
                k.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .filter(|k| {
                k.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                        && rev.is_none_or(|r| s.last_applied_revision.as_deref() == Some(r))
                })
            })
            .count()
    }

    /// Polls every `every` until `n` Kustomizations `<prefix>app-*` are Ready (at `rev`).
    async fn wait_count(&self, prefix: &str, rev: Option<&str>, every: Duration, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(1800);
        while self.at(prefix, rev).await != self.n {
            assert!(Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(every).await;
        }
    }

    /// Creates the N Kustomizations `<prefix>app-<i>`, each at (path, sourceRef) of `source`;
    /// returns the time from the first create until all are Ready.
    async fn create_all(
        &self,
        prefix: &str,
        source: impl Fn(usize) -> (String, serde_json::Value),
    ) -> Duration {
        let ns = &self.ns;
        let items = (0..self.n).map(|i| {
            let (path, source_ref) = source(i);
            let spec = json!({"interval": "1h", "path": path, "prune": true,
                              "targetNamespace": ns, "namePrefix": prefix,
                              "sourceRef": source_ref});
            (format!("{prefix}app-{i}"), spec)
        });
        let t0 = Instant::now();
        plumb_bench::create_kustomizations(&self.ks(), items).await;
        self.wait_count(prefix, None, Duration::from_secs(1), "all Ready")
            .await;
        let took = t0.elapsed();
        eprintln!(
            "{} Kustomizations {prefix}app-* created and Ready in {:.1} s",
            self.n,
            took.as_secs_f64()
        );
        took
    }

    /// Sets (or removes) the opt-out annotation, or `spec.suspend`, on every `prefix` one.
    async fn patch_all(&self, prefix: &str, patch: serde_json::Value) {
        let patches = (0..self.n).map(|i| {
            let api = self.ks();
            let patch = patch.clone();
            async move {
                api.patch(
                    &format!("{prefix}app-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .unwrap();
            }
        });
        futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
            futures::stream::iter(patches),
            16,
        ))
        .await;
    }

    fn rendered(&self, prefix: &str) -> (u64, u64, u64) {
        let (mut touched, mut others, mut skipped) = (0, 0, 0);
        for i in 0..self.n {
            let c = build_counts(&self.ctx, &self.ns, &format!("{prefix}app-{i}"));
            if i == TOUCHED {
                touched += c.rendered;
            } else {
                others += c.rendered;
            }
            skipped += c.skipped;
        }
        (touched, others, skipped)
    }

    /// Waits until no request was sent for 1.5 s (at most a minute): stragglers of the last
    /// step (re-triggers, status writes) land before counting starts or ends.
    async fn quiet(&self) {
        let total = || -> u64 {
            self.counts
                .lock()
                .unwrap()
                .values()
                .flat_map(|m| m.values())
                .sum()
        };
        let mut last = u64::MAX;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = total();
            if now == last {
                break;
            }
            last = now;
        }
    }

    /// Commits a change to app 7, delivers it through the Receiver and measures.
    async fn commit(&mut self, prefix: &str, on_git: bool) -> Row {
        self.commits += 1;
        self.quiet().await;
        let before = self.rendered(prefix);
        self.counts.lock().unwrap().clear();
        let name = format!("app-{TOUCHED}");
        let sha = self.repo.commit(
            &[(&format!("apps/{name}/cm.yaml"), &cm(&name, self.commits))],
            "touch one app",
        );
        let t0 = Instant::now();
        let (addr, path, sig) = &self.hook;
        assert_eq!(
            plumb_bench::post_push(*addr, path, sig, r#"{"ref":"refs/heads/master"}"#).await,
            200
        );
        let cms: Api<ConfigMap> = Api::namespaced(self.admin.clone(), &self.ns);
        let touched = format!("{prefix}{name}");
        let want = self.commits.to_string();
        wait::poll("touched app applied", Duration::from_secs(120), || async {
            let c = cms.get(&touched).await.ok()?;
            let k = self.ks().get(&touched).await.ok()?;
            let s = k.status?;
            let ready = s.last_applied_revision == s.last_attempted_revision
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
            (c.data?.get("v")? == &want && ready).then_some(())
        })
        .await
        .unwrap();
        let ready = t0.elapsed();
        // With an ArtifactGenerator only the touched app's artifact changes; the others keep
        // their revision, so wait for the git revision on the GitRepository ones only.
        let rev = format!("master@sha1:{sha}");
        if on_git {
            let every = Duration::from_millis(250);
            self.wait_count(prefix, Some(&rev), every, "all at the new revision")
                .await;
        }
        let all = t0.elapsed();
        // Let stragglers (re-triggers, status writes) land before counting.
        self.quiet().await;
        let after = self.rendered(prefix);
        let mut row = Row {
            ready,
            all,
            rendered_touched: after.0 - before.0,
            rendered_others: after.1 - before.1,
            skipped: after.2 - before.2,
            touched: BTreeMap::new(),
            others: BTreeMap::new(),
        };
        for (obj, m) in self.counts.lock().unwrap().iter() {
            let into = if *obj == touched {
                &mut row.touched
            } else if obj.starts_with(&format!("{prefix}app-")) {
                &mut row.others
            } else {
                continue;
            };
            for (k, v) in m {
                *into.entry(k.clone()).or_default() += v;
            }
        }
        row
    }
}

fn print(title: &str, n: usize, setup: Duration, skip: &Row, flux: &Row) {
    println!("\n{title}");
    println!("| | skip (plumb) | opted out (Flux) |");
    println!("|---|---|---|");
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    println!(
        "| setup: {n} created -> all Ready | {:.1} s | |",
        setup.as_secs_f64()
    );
    println!(
        "| push -> touched app Ready | {} | {} |",
        ms(skip.ready),
        ms(flux.ready)
    );
    println!(
        "| push -> all {n} at the revision | {} | {} |",
        ms(skip.all),
        ms(flux.all)
    );
    println!(
        "| renders (= apply sets): touched / other {} | {} / {} | {} / {} |",
        n - 1,
        skip.rendered_touched,
        skip.rendered_others,
        flux.rendered_touched,
        flux.rendered_others
    );
    println!(
        "| revisions recorded without render | {} | {} |",
        skip.skipped, flux.skipped
    );
    println!(
        "| requests, touched app | {:?} | {:?} |",
        skip.touched, flux.touched
    );
    println!(
        "| requests, other {} | {:?} | {:?} |",
        n - 1,
        skip.others,
        flux.others
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let info = ControlPlane::shared().expect("control plane");
    let admin = info.admin_client().await.unwrap();
    common::install_crds(&admin).await;
    let ns = TestNamespace::create(info, "bench-mono").await.unwrap();
    let name = ns.name().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "mono");
    let files: Vec<(String, String)> = (0..n)
        .flat_map(|i| {
            let app = format!("app-{i}");
            [
                (
                    format!("apps/{app}/kustomization.yaml"),
                    "resources:\n- cm.yaml\n".to_string(),
                ),
                (format!("apps/{app}/cm.yaml"), cm(&app, 0)),
            ]
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(&refs, "monorepo");
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();

    // plumb, with a client that counts every request it sends by object and kind.
    let counts: Counts = Arc::default();
    let c = counts.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let (obj, what) = classify(&req);
        if let Ok(mut m) = c.lock() {
            *m.entry(obj).or_default().entry(what).or_default() += 1;
        }
        req
    });
    let mut cfg = common::admin_config(info).await;
    cfg.read_timeout = Some(Duration::from_secs(60));
    let client = kube::client::ClientBuilder::try_from(cfg.clone())
        .unwrap()
        .with_layer(&layer)
        .build();
    let ctx = plumb_bench::context(client, cfg, &tmp.path().join("storage")).await;
    let scope = plumb_controller::Scope {
        namespace: Some(name.clone()),
        label_selector: None,
    };
    tokio::spawn(plumb_controller::run(ctx.clone(), scope, 20));
    let hook_addr = plumb_bench::serve_receiver(ctx.clone(), &admin, &name).await;
    let token = plumb_bench::RECEIVER_TOKEN;
    let pp = PostParams::default();
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "mono", "namespace": name},
        "spec": {"url": server.url("mono"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(admin.clone(), &name)
        .create(&pp, &git)
        .await
        .unwrap();
    let rcv: Api<Receiver> = Api::namespaced(admin.clone(), &name);
    let receiver_obj: Receiver = serde_json::from_value(json!({
        "metadata": {"name": "github", "namespace": name},
        "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "token"},
                 "resources": [{"kind": "GitRepository", "name": "mono"}]}
    }))
    .unwrap();
    rcv.create(&pp, &receiver_obj).await.unwrap();
    let path = rcv.get("github").await.unwrap().webhook_path(token);
    common::wait_obj(&rcv, "github", "receiver ready", |v| {
        v["status"]["webhookPath"] == path.as_str()
    })
    .await;
    let body = r#"{"ref":"refs/heads/master"}"#;
    let sig = receiver::sign("sha256", token, body.as_bytes()).unwrap();

    let mut bench = Bench {
        admin: admin.clone(),
        ns: name.clone(),
        ctx: ctx.clone(),
        counts,
        repo,
        hook: (hook_addr, path, sig),
        n,
        commits: 0,
    };
    let opt_out = json!({"metadata": {"annotations": {
        plumb_api::consts::annotation::SKIP_UNCHANGED: "disabled"}}});

    // (1) N Kustomizations on one GitRepository.
    let setup = bench
        .create_all("m-", |i| {
            (
                format!("./apps/app-{i}"),
                json!({"kind": "GitRepository", "name": "mono"}),
            )
        })
        .await;
    let skip = bench.commit("m-", true).await;
    bench.patch_all("m-", opt_out.clone()).await;
    let flux = bench.commit("m-", true).await;
    print(
        &format!("{n} Kustomizations on one GitRepository, a commit touching app-{TOUCHED}"),
        n,
        setup,
        &skip,
        &flux,
    );
    bench
        .patch_all("m-", json!({"spec": {"suspend": true}}))
        .await;

    // (2) One ArtifactGenerator splitting the monorepo into N ExternalArtifacts.
    let artifacts: Vec<_> = (0..n)
        .map(|i| {
            json!({"name": format!("app-{i}"), "copy": [
                {"from": format!("@mono/apps/app-{i}/**"), "to": "@artifact/"}]})
        })
        .collect();
    let generator: plumb_api::ArtifactGenerator = serde_json::from_value(json!({
        "apiVersion": "source.extensions.fluxcd.io/v1beta1", "kind": "ArtifactGenerator",
        "metadata": {"name": "split", "namespace": name},
        "spec": {"sources": [{"alias": "mono", "kind": "GitRepository", "name": "mono"}],
                 "artifacts": artifacts}
    }))
    .unwrap();
    Api::<plumb_api::ArtifactGenerator>::namespaced(admin.clone(), &name)
        .create(&pp, &generator)
        .await
        .unwrap();
    let setup = bench
        .create_all("g-", |i| {
            (
                "./".to_string(),
                json!({"kind": "ExternalArtifact", "name": format!("app-{i}")}),
            )
        })
        .await;
    let skip = bench.commit("g-", false).await;
    bench.patch_all("g-", opt_out).await;
    let flux = bench.commit("g-", false).await;
    print(
        &format!(
            "one ArtifactGenerator, {n} ExternalArtifacts and Kustomizations, a commit touching app-{TOUCHED}"
        ),
        n,
        setup,
        &skip,
        &flux,
    );
    let _ = ns.delete().await;
}
