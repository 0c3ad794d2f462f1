//! Serves the UI over a synthetic fleet, for working on the page without a cluster.
//!
//! `cargo run -p plumb-ui --example ui_fixture -- [ADDR] [OBJECTS]` (default
//! `127.0.0.1:9000 2000`). Every second one object changes state, to watch live updates.

use std::time::Duration;

use plumb_ui::{AppState, State, Store, UiOptions, fixture, router};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let store = Store::new();
    for o in fixture::synthetic_fleet(n) {
        store.upsert(o);
    }
    let churn = store.clone();
    tokio::spawn(async move {
        let mut i = 0usize;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let all = churn.snapshot();
            if all.is_empty() {
                continue;
            }
            let mut o = all[i % all.len()].clone();
            o.state = if o.state == State::Ready {
                State::Failed
            } else {
                State::Ready
            };
            churn.upsert(o);
            i += 7;
        }
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("plumb ui fixture: http://{}/", listener.local_addr()?);
    let app = router(AppState::new(
        store,
        UiOptions {
            context: "fixture".into(),
            ..Default::default()
        },
    ));
    plumb_ui::serve(listener, app, std::future::pending()).await?;
    Ok(())
}
