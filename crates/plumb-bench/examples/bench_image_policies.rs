//! ImageRepository scan and ImagePolicy evaluation cost without a cluster: a tag list of
//! `TAGS` tags (10,000 by default: semver releases, `main-<sha>-<timestamp>` builds and
//! cosign `.sig` tags) goes through the exclusion list into the tag database, then
//! `POLICIES` policies (100 by default: semver ranges, numerical with `filterTags.extract`,
//! alphabetical) pick their latest tag. Prints the time of each phase, the tag database's heap
//! bytes and the peak RSS.
//!
//!     cargo run --release -p plumb-bench --example bench_image_policies
//!
//! The scan over HTTP (Link pagination, 1,000 tags a page) is measured by the
//! `image_policy::hundred_thousand_tags` integration test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::time::Instant;

use plumb_image::{Exclusions, Order, Policy, PolicyKind, TagDb, TagFilter};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process in MiB (`VmHWM` of /proc/self/status).
fn peak_rss_mib() -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

fn tags(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("{}.{}.{}", i % 7, (i / 7) % 50, i / 350),
            1 => format!(
                "main-{:07x}-{}",
                i * 2654435761 % 0xfffffff,
                1_700_000_000 + i
            ),
            2 => format!("sha256-{i:064x}.sig"),
            _ => format!("v{}.{}.{}-rc.{}", i % 5, i % 11, i % 13, i % 3),
        })
        .collect()
}

fn policies(n: usize) -> Vec<Policy> {
    (0..n)
        .map(|i| {
            let (kind, filter) = match i % 3 {
                0 => (
                    PolicyKind::SemVer(format!(">={}.0.0 <{}.0.0", i % 6, i % 6 + 1)),
                    None,
                ),
                1 => (
                    PolicyKind::Numerical(Order::Asc),
                    Some(TagFilter::new(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", Some("$ts")).unwrap()),
                ),
                _ => (
                    PolicyKind::Alphabetical(Order::Desc),
                    Some(TagFilter::new(&format!("^{}\\.", i % 7), None).unwrap()),
                ),
            };
            Policy::new(kind, filter).unwrap()
        })
        .collect()
}

fn main() {
    let n_tags = env_usize("TAGS", 10_000);
    let n_policies = env_usize("POLICIES", 100);
    let listed = tags(n_tags);
    let t0 = Instant::now();
    let exclusions = Exclusions::new(&[r"^.*\.sig$"]).unwrap();
    let db = TagDb::new(listed, &exclusions);
    let revision = db.revision();
    let latest = db.latest_tags();
    let scan = t0.elapsed();
    let compiled = policies(n_policies);
    let t1 = Instant::now();
    let mut found = 0;
    for p in &compiled {
        if p.latest(db.tags()).unwrap().is_some() {
            found += 1;
        }
    }
    let eval = t1.elapsed();
    println!(
        "tags={n_tags} kept={} revision={}.. latest[0]={} scan_ms={:.1}",
        db.len(),
        &revision[..15],
        latest.first().map_or("", String::as_str),
        scan.as_secs_f64() * 1e3
    );
    println!(
        "tag_db_heap_kib={:.1} bytes_per_tag={:.1} (tag buffers plus 24-byte String slots)",
        db.heap_bytes() as f64 / 1024.0,
        db.heap_bytes() as f64 / db.len().max(1) as f64
    );
    println!(
        "policies={n_policies} with_result={found} eval_ms={:.1} per_policy_ms={:.3} peak_rss_mib={:.1}",
        eval.as_secs_f64() * 1e3,
        eval.as_secs_f64() * 1e3 / n_policies.max(1) as f64,
        peak_rss_mib()
    );
}
