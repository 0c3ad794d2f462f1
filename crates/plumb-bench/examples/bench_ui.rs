//! First render of the fleet UI in headless Chromium: for each fleet size, the UI server over
//! `plumb_ui::fixture::synthetic_fleet(N)` runs in this process and a fresh tab (cache off)
//! loads the page RUNS times; the page records `window.plumbFirstRenderMs` (navigation start
//! to the first frame showing the laid-out graph: HTML, modules, `/api/fleet`, layout, SVG).
//! Prints the median and the spread per size, the size of `/api/fleet`, and the RSS of this
//! process (the server and its store; the browser runs in its own processes).
//!
//! `cargo run -p plumb-bench --example bench_ui [RUNS] [N...]` (defaults 7, 200 2000 5000).
//! The target: under 1 s at 2,000 objects (release build).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver fails loudly

use std::time::Duration;

use plumb_testing::browser::Browser;
use plumb_ui::{AppState, UiOptions, fixture, router};

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Serves a fleet of `n` objects on a free port; the page URL and the server task.
async fn serve(n: usize) -> (String, tokio::task::JoinHandle<()>) {
    let store = fixture::synthetic_store(n);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = router(AppState::new(
        store,
        UiOptions {
            context: "bench".into(),
            read_only: true,
            bound: None,
        },
    ));
    let task = tokio::spawn(async move {
        plumb_ui::serve(listener, app, std::future::pending())
            .await
            .unwrap();
    });
    (url, task)
}

/// One cold load of `url` in a new tab: `plumbFirstRenderMs`.
async fn first_render(browser: &Browser, url: &str) -> Times {
    let page = browser.new_page(1400, 900).await.unwrap();
    page.disable_cache().await.unwrap();
    page.goto(url).await.unwrap();
    page.wait_until(
        "document.body.dataset.rendered === '1'",
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let ms = page
        .eval("window.plumbFirstRenderMs")
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    let marks = page
        .eval(
            "['plumb-fleet', 'plumb-layout', 'plumb-drawn'].map(n => performance.getEntriesByName(n)[0].startTime)",
        )
        .await
        .unwrap();
    let mark = |i: usize| marks[i].as_f64().unwrap();
    let nodes = page
        .eval("document.querySelectorAll('svg#graph g.node').length")
        .await
        .unwrap();
    assert!(nodes.as_u64().unwrap() > 0, "nothing drawn");
    page.close().await.unwrap();
    Times {
        first: ms,
        fleet: mark(0),
        layout: mark(1),
        drawn: mark(2),
    }
}

/// When a load reached each step, in ms from navigation start.
struct Times {
    /// The fleet JSON parsed.
    fleet: f64,
    /// The graph laid out.
    layout: f64,
    /// Its SVG built.
    drawn: f64,
    /// The first frame showing it (`plumbFirstRenderMs`).
    first: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(7);
    let mut sizes: Vec<usize> = args.map(|a| a.parse().unwrap()).collect();
    if sizes.is_empty() {
        sizes = vec![200, 2000, 5000];
    }
    let browser = Browser::launch().await.unwrap();
    println!("first render of the fleet page, {runs} cold loads per size (median, min..max):");
    for n in sizes {
        let (url, server) = serve(n).await;
        let fleet_bytes = fleet_body_len(&format!("{url}api/fleet")).await;
        let rss = proc_kib("VmRSS:");
        // One warm-up load: the browser's first tab pays its own start-up.
        first_render(&browser, &url).await;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(first_render(&browser, &url).await);
        }
        let first: Vec<f64> = times.iter().map(|t| t.first).collect();
        let (min, max) = first
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        println!(
            "  {n:>5} objects: {:>6.0} ms  ({min:.0}..{max:.0}; fleet parsed at {:.0}, laid out at \
             {:.0}, SVG built at {:.0})  /api/fleet {:.0} KiB, RSS {:.1} MiB",
            median(first),
            median(times.iter().map(|t| t.fleet).collect()),
            median(times.iter().map(|t| t.layout).collect()),
            median(times.iter().map(|t| t.drawn).collect()),
            fleet_bytes as f64 / 1024.0,
            mib(rss),
        );
        server.abort();
    }
    println!(
        "peak RSS of this process: {:.1} MiB",
        mib(proc_kib("VmHWM:"))
    );
    browser.close().await;
}

/// The body length of a GET (HTTP/1.1 by hand: the bench needs no HTTP client for one call).
async fn fleet_body_len(url: &str) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf.len() - head_end
}
