//! `cargo bench -p plumb-helm --bench repo`: prints medians and ratios of getting a chart
//! from a loopback chart repository whose index lists `PLUMB_BENCH_VERSIONS` chart versions
//! (default 10,000, about the size of a large public index; `PLUMB_BENCH_RUNS` runs, default
//! 15):
//!
//! (a) uncached: fetch + parse the index, resolve a range, download + verify the chart into
//!     an empty cache; (b) the same with the chart already cached (no chart request);
//! (c) what a HelmRelease pays with a stored index artifact: parse the canonical JSON,
//!     resolve, read the cached chart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use plumb_helm::repo::{ChartCache, ClientOptions, IndexFile, RepoClient, sha256_hex};
use plumb_testing::chartrepo::{ChartRepoServer, package_chart};
use plumb_testing::git::HttpAuth;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An index with the real `web` chart plus `versions` synthetic entries.
fn write_index(dir: &std::path::Path, web_digest: &str, versions: usize) -> usize {
    let zeros = "0".repeat(64);
    let mut y = String::from("apiVersion: v1\nentries:\n  web:\n");
    for v in ["1.0.0", "1.1.0"] {
        let _ = write!(
            y,
            "  - name: web\n    version: {v}\n    urls: [web-{v}.tgz]\n    digest: {d}\n    created: \"2024-01-01T00:00:00Z\"\n    apiVersion: v2\n    appVersion: \"1.0\"\n    description: a bench chart\n",
            d = if v == "1.1.0" { web_digest } else { &zeros }
        );
    }
    let per_chart = 50;
    for c in 0..versions.div_ceil(per_chart) {
        let _ = writeln!(y, "  synth-{c}:");
        for v in 0..per_chart {
            let _ = write!(
                y,
                "  - name: synth-{c}\n    version: 1.{v}.0\n    urls: [https://charts.example.com/synth-{c}-1.{v}.0.tgz]\n    digest: {z}\n    created: \"2024-01-01T00:00:00Z\"\n    apiVersion: v2\n    appVersion: \"{v}.0\"\n    description: synthetic chart number {c} version {v} for the index size bench\n    keywords: [bench, synthetic]\n    maintainers:\n    - name: plumb\n",
                z = zeros
            );
        }
    }
    std::fs::write(dir.join("index.yaml"), &y).unwrap();
    y.len()
}

fn main() {
    let versions: usize = std::env::var("PLUMB_BENCH_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runs: usize = std::env::var("PLUMB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let dir = tempfile::tempdir().unwrap();
    let tgz = package_chart(dir.path(), "web", "1.1.0");
    let digest = sha256_hex(&std::fs::read(&tgz).unwrap());
    let size = write_index(dir.path(), &digest, versions);
    let server = ChartRepoServer::start(dir.path(), HttpAuth::Anonymous);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = RepoClient::new(&server.url("/"), ClientOptions::default()).unwrap();
    println!(
        "index: {versions} synthetic versions + 2, {:.1} MiB; chart {} bytes; {runs} runs",
        size as f64 / (1 << 20) as f64,
        std::fs::metadata(&tgz).unwrap().len()
    );

    let once = |cache: &ChartCache| {
        rt.block_on(async {
            let t = Instant::now();
            let f = client.fetch_index().await.unwrap();
            let cv = f.index.resolve("web", "~1.1").unwrap();
            let data = client.download_chart(cv, Some(cache)).await.unwrap();
            assert_eq!(sha256_hex(&data), digest);
            (t.elapsed(), f.canonical)
        })
    };
    let mut uncached = Vec::new();
    let mut canonical = Vec::new();
    for i in 0..runs {
        let cache = ChartCache::new(dir.path().join(format!("cache-{i}")));
        let (d, c) = once(&cache);
        uncached.push(d);
        canonical = c;
    }
    let warm = ChartCache::new(dir.path().join("cache-0"));
    let before = server.count("web-1.1.0.tgz");
    let cached: Vec<Duration> = (0..runs).map(|_| once(&warm).0).collect();
    assert_eq!(
        server.count("web-1.1.0.tgz"),
        before,
        "cached runs download nothing"
    );
    let from_artifact: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let index = IndexFile::from_json(&canonical, "artifact").unwrap();
            let cv = index.resolve("web", "~1.1").unwrap();
            let data = warm.get(&cv.digest_hex().unwrap()).unwrap().unwrap();
            assert!(!data.is_empty());
            t.elapsed()
        })
        .collect();
    let (u, c, a) = (median(uncached), median(cached), median(from_artifact));
    println!(
        "(a) fetch + resolve + download, uncached chart: median {:.1} ms",
        ms(u)
    );
    println!(
        "(b) fetch + resolve + download, cached chart:   median {:.1} ms ({:.2}x of a)",
        ms(c),
        ms(c) / ms(u)
    );
    println!(
        "(c) stored index artifact + resolve + cache hit: median {:.1} ms ({:.2}x of a)",
        ms(a),
        ms(a) / ms(u)
    );
}
