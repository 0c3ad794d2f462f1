//! The page in headless Chromium against the UI server over a synthetic fleet (the router runs
//! in this process, so a test can change the Store and watch the page follow). Screenshots go
//! to `target/ui-screenshots/` (see `plumb_testing::browser::screenshot_dir`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use plumb_testing::browser::{Browser, Page, js_str};
use plumb_ui::{AppState, ObjectSummary, State, Store, UiOptions, fixture, router};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The UI server on a free port over a synthetic fleet of `n` objects.
struct Server {
    store: Store,
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(n: usize, read_only: bool) -> Server {
    let store = fixture::synthetic_store(n);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = router(AppState::new(
        store.clone(),
        UiOptions {
            context: "browser-test".into(),
            read_only,
            bound: None,
        },
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(plumb_ui::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Server {
        store,
        url,
        _stop: stop,
    }
}

/// A browser showing `path` (a hash route) of `server`, after the first full render.
async fn open(server: &Server, path: &str) -> (Browser, Page) {
    let browser = Browser::launch().await.unwrap();
    let page = browser.new_page(1400, 900).await.unwrap();
    page.goto(&format!("{}{path}", server.url)).await.unwrap();
    page.wait_until("document.body.dataset.rendered === '1'", WAIT)
        .await
        .unwrap();
    (browser, page)
}

/// `selector`'s elements as `data-id` -> `data-state`.
async fn states(page: &Page, selector: &str) -> BTreeMap<String, String> {
    let v = page
        .eval(&format!(
            "[...document.querySelectorAll({})].map(e => [e.dataset.id, e.dataset.state])",
            js_str(selector)
        ))
        .await
        .unwrap();
    serde_json::from_value::<Vec<(String, String)>>(v)
        .unwrap()
        .into_iter()
        .collect()
}

fn state_word(s: State) -> String {
    serde_json::to_value(s)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn expected(store: &Store, keep: impl Fn(&ObjectSummary) -> bool) -> BTreeMap<String, String> {
    store
        .snapshot()
        .into_iter()
        .filter(|o| keep(o))
        .map(|o| (o.id, state_word(o.state)))
        .collect()
}

/// Ends a test: the screenshot kept as an artifact, no script error seen, the browser closed.
async fn done(browser: Browser, page: &Page, screenshot: Option<&str>) {
    if let Some(name) = screenshot {
        page.screenshot(name).await.unwrap();
    }
    let errors = page.errors();
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_shows_every_object_with_its_state_and_loads_nothing_from_elsewhere() {
    let server = serve(300, false).await;
    let (browser, page) = open(&server, "#/").await;
    let drawn = states(&page, "svg#graph g.node[data-id][data-state]").await;
    let objects: BTreeMap<_, _> = drawn
        .iter()
        .filter(|(_, s)| *s != "missing")
        .map(|(i, s)| (i.clone(), s.clone()))
        .collect();
    assert_eq!(objects, expected(&server.store, |_| true));
    // The fixture's dependsOn chains name some objects that do not exist: drawn as missing.
    let missing: Vec<_> = drawn
        .iter()
        .filter(|(_, s)| *s == "missing")
        .map(|(i, _)| i)
        .collect();
    assert!(!missing.is_empty());
    assert!(missing.iter().all(|id| server.store.get(id).is_none()));
    // Every node has an accessible name with its state.
    let label = page
        .eval("document.querySelector('g.node.st-failed').getAttribute('aria-label')")
        .await
        .unwrap();
    assert!(label.as_str().unwrap().contains(": failed: "), "{label}");
    let foreign = page
        .eval(
            "[...performance.getEntriesByType('resource'), ...performance.getEntriesByType('navigation')]\
             .map(e => e.name).filter(u => !u.startsWith(location.origin + '/'))",
        )
        .await
        .unwrap();
    assert_eq!(foreign, Value::Array(vec![]), "requests left the origin");
    let loaded = page
        .eval("performance.getEntriesByType('resource').length")
        .await
        .unwrap();
    assert!(
        loaded.as_u64().unwrap() >= 7,
        "the page's modules and fleet were loaded: {loaded}"
    );
    assert!(
        page.eval("window.plumbFirstRenderMs > 0")
            .await
            .unwrap()
            .as_bool()
            .unwrap()
    );
    done(browser, &page, Some("graph")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_pushed_into_the_store_turns_its_node_red_in_place() {
    let server = serve(300, false).await;
    let (browser, page) = open(&server, "#/").await;
    let mut o = server
        .store
        .snapshot()
        .into_iter()
        .find(|o| o.kind == "Kustomization" && o.state == State::Ready)
        .unwrap();
    let node = format!("document.querySelector('g.node[data-id=\"{}\"]')", o.id);
    // Marks the element: a re-layout would replace it, an in-place update keeps it.
    page.eval(&format!("{node}.plumbMark = 1")).await.unwrap();
    o.state = State::Failed;
    o.reason = "BuildFailed".into();
    o.message = "kustomization path not found: ./broken".into();
    server.store.upsert(o.clone());
    page.wait_until(
        &format!("{node}.dataset.state === 'failed'"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(page.eval(&format!("{node}.plumbMark")).await.unwrap(), 1);
    let label = page
        .eval(&format!("{node}.getAttribute('aria-label')"))
        .await
        .unwrap();
    assert!(
        label
            .as_str()
            .unwrap()
            .ends_with("failed: kustomization path not found: ./broken")
    );
    // A new object is a structural change: laid out (debounced) and drawn.
    let mut added = o.clone();
    added.name = "added-later".into();
    added.id = ObjectSummary::id_of(&added.kind, &added.namespace, &added.name);
    server.store.upsert(added.clone());
    page.wait_for(
        &format!("g.node[data-id=\"{}\"]", added.id),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    // And a deleted one disappears.
    server.store.delete(&added.id);
    page.wait_until(
        &format!(
            "!document.querySelector('g.node[data-id=\"{}\"]')",
            added.id
        ),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    done(browser, &page, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_graph_and_the_table_and_live_in_the_hash() {
    let server = serve(300, false).await;
    let (browser, page) = open(&server, "#/?ns=team-3&kind=Kustomization").await;
    let drawn = states(&page, "svg#graph g.node:not(.missing)").await;
    let want = expected(&server.store, |o| {
        o.namespace == "team-3" && o.kind == "Kustomization"
    });
    assert!(!want.is_empty());
    assert_eq!(drawn, want);
    // The list view with a label selector and free text.
    page.goto(&format!("{}#/list?label=team%3Dteam-1&q=app-1", server.url))
        .await
        .unwrap();
    let rows_want = expected(&server.store, |o| {
        o.labels.get("team").map(String::as_str) == Some("team-1") && o.id.contains("app-1")
    });
    assert!(!rows_want.is_empty());
    page.wait_until(
        &format!(
            "document.querySelectorAll('table#fleet-table tbody tr').length === {}",
            rows_want.len()
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        states(&page, "table#fleet-table tr[data-id][data-state]").await,
        rows_want
    );
    // The state select writes the hash and narrows the table.
    page.eval("const s = document.getElementById('f-state'); s.value = 'failed'; s.dispatchEvent(new Event('change'))")
        .await
        .unwrap();
    page.wait_until("location.hash.includes('state=failed')", WAIT)
        .await
        .unwrap();
    let failed_want = expected(&server.store, |o| {
        o.state == State::Failed
            && o.labels.get("team").map(String::as_str) == Some("team-1")
            && o.id.contains("app-1")
    });
    page.wait_until(
        &format!(
            "document.querySelectorAll('table#fleet-table tbody tr').length === {}",
            failed_want.len()
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        states(&page, "table#fleet-table tr[data-id]").await,
        failed_want
    );
    done(browser, &page, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_tab_reaches_a_node_arrows_move_and_enter_opens_its_page() {
    let server = serve(200, false).await;
    let (browser, page) = open(&server, "#/").await;
    let active = "(document.activeElement && document.activeElement.dataset && document.activeElement.dataset.id) || ''";
    let mut first = String::new();
    for _ in 0..40 {
        page.press("Tab").await.unwrap();
        let id = page
            .eval(&format!(
                "document.activeElement.matches('g.node') ? {active} : ''"
            ))
            .await
            .unwrap();
        if let Some(id) = id.as_str().filter(|s| !s.is_empty()) {
            first = id.to_string();
            break;
        }
    }
    assert!(!first.is_empty(), "Tab never reached a graph node");
    page.press("ArrowDown").await.unwrap();
    let next = page.eval(active).await.unwrap();
    let next = next.as_str().unwrap().to_string();
    assert!(
        !next.is_empty() && next != first,
        "ArrowDown moved from {first} to {next:?}"
    );
    // Sources and missing objects come first (rank 0); walk right to an object that exists.
    let mut target = String::new();
    for _ in 0..6 {
        page.press("ArrowRight").await.unwrap();
        target = page
            .eval(active)
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        if server.store.get(&target).is_some() {
            break;
        }
    }
    assert!(server.store.get(&target).is_some(), "{target}");
    page.press("Enter").await.unwrap();
    page.wait_for(&format!("#object[data-id=\"{target}\"]"), WAIT)
        .await
        .unwrap();
    // The fixture server has no cluster behind it (503): the page says so, keeps the summary.
    page.wait_until(
        "document.querySelector('#details .note')?.textContent.includes('503')",
        WAIT,
    )
    .await
    .unwrap();
    done(browser, &page, Some("object")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_list_is_newest_first() {
    let server = serve(400, false).await;
    let (browser, page) = open(&server, "#/failures").await;
    let got = page
        .eval("[...document.querySelectorAll('#failures [data-id]')].map(e => e.dataset.id)")
        .await
        .unwrap();
    let mut bad: Vec<ObjectSummary> = server
        .store
        .snapshot()
        .into_iter()
        .filter(|o| matches!(o.state, State::Failed | State::Stalled))
        .collect();
    bad.sort_by(|a, b| {
        b.last_transition
            .cmp(&a.last_transition)
            .then(a.id.cmp(&b.id))
    });
    let want: Vec<String> = bad.into_iter().map(|o| o.id).collect();
    assert!(want.len() > 3);
    assert_eq!(got, serde_json::json!(want));
    done(browser, &page, Some("failures")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_show_the_servers_answer_and_are_hidden_when_read_only() {
    let server = serve(100, false).await;
    let id = server
        .store
        .snapshot()
        .into_iter()
        .find(|o| o.kind == "Kustomization")
        .unwrap()
        .id;
    let (browser, page) = open(&server, &format!("#/object/{id}")).await;
    page.wait_for("button[data-action=reconcile]", WAIT)
        .await
        .unwrap();
    // Suspend asks first: nothing is sent until it is confirmed.
    page.click("button[data-action=suspend]").await.unwrap();
    page.wait_for("button[data-confirm=suspend]", WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.eval("document.getElementById('action-result').dataset.outcome ?? null")
            .await
            .unwrap(),
        Value::Null
    );
    // The fixture server has no cluster to act on (503): the refusal is shown, not swallowed.
    page.click("button[data-action=reconcile]").await.unwrap();
    page.wait_for("#action-result[data-outcome=error]", WAIT)
        .await
        .unwrap();
    let text = page.text("#action-result").await.unwrap();
    assert!(
        text.starts_with("reconcile refused (HTTP 503): no cluster"),
        "{text}"
    );
    browser.close().await;

    let ro = serve(100, true).await;
    let (browser, page) = open(&ro, &format!("#/object/{id}")).await;
    page.wait_for("#object dl.summary", WAIT).await.unwrap();
    assert_eq!(
        page.eval(
            "document.querySelectorAll('button[data-action]:not([data-action=diff])').length"
        )
        .await
        .unwrap(),
        0
    );
    browser.close().await;
}

/// The harness sees script errors (so `done`'s check can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_errors_reach_the_test() {
    let server = serve(10, false).await;
    let (browser, page) = open(&server, "#/").await;
    assert!(page.errors().is_empty());
    page.eval("setTimeout(() => { throw new Error('boom from the page') }, 0); 1")
        .await
        .unwrap();
    plumb_testing::wait::poll("the page error", WAIT, || async {
        page.errors()
            .iter()
            .any(|e| e.contains("boom from the page"))
            .then_some(())
    })
    .await
    .unwrap();
    browser.close().await;
}

/// A dependsOn cycle (and a self-reference) is hostile input for the layered layout: both
/// objects are drawn and the page stays responsive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depends_on_cycle_is_drawn() {
    let server = serve(20, false).await;
    let (browser, page) = open(&server, "#/").await;
    let base = server
        .store
        .snapshot()
        .into_iter()
        .find(|o| o.kind == "Kustomization")
        .unwrap();
    let cyclic = |name: &str, on: &str| {
        let mut o = base.clone();
        o.name = name.into();
        o.id = ObjectSummary::id_of(&o.kind, &o.namespace, name);
        o.refs = [on, name]
            .iter()
            .map(|n| plumb_ui::Ref {
                id: ObjectSummary::id_of(&o.kind, &o.namespace, n),
                rel: plumb_ui::Rel::DependsOn,
            })
            .collect();
        o
    };
    let (a, b) = (cyclic("cycle-a", "cycle-b"), cyclic("cycle-b", "cycle-a"));
    server.store.upsert(a.clone());
    server.store.upsert(b.clone());
    for o in [&a, &b] {
        page.wait_for(&format!("g.node[data-id=\"{}\"]:not(.missing)", o.id), WAIT)
            .await
            .unwrap();
    }
    done(browser, &page, None).await;
}
