//! Token mint time: uncached (`mint_token`, a SigV4 presign) vs cached (`TokenSource::token`
//! answering from its cache). Prints medians and their ratio. Run with
//! `cargo bench -p plumb-eks --bench token`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use plumb_eks::{Credentials, ManualClock, TokenKey, TokenSource, mint_token, sts_endpoint};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    const ROUNDS: usize = 2000;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "secret",
        Some("session-token".into()),
        None,
        "bench",
    );
    let endpoint = sts_endpoint("eu-west-1", None);

    let uncached: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let token = mint_token(&creds, "bench", "eu-west-1", &endpoint, now).expect("mint");
            std::hint::black_box(token);
            t.elapsed()
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let source = TokenSource::new(
        TokenKey {
            cluster: "bench".into(),
            region: "eu-west-1".into(),
            role_arn: None,
        },
        SharedCredentialsProvider::new(creds.clone()),
        endpoint.clone(),
        Arc::new(ManualClock::new(now)),
    );
    let cached: Vec<Duration> = runtime.block_on(async {
        source.token().await.expect("first token");
        let mut v = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            std::hint::black_box(source.token().await.expect("token"));
            v.push(t.elapsed());
        }
        v
    });
    assert_eq!(source.mint_count(), 1, "the cache must answer");

    let (u, c) = (median(uncached), median(cached));
    println!("token mint median, uncached (SigV4 presign): {u:?}");
    println!("token mint median, cached (TokenSource):     {c:?}");
    println!(
        "ratio uncached/cached: {:.1}x",
        u.as_secs_f64() / c.as_secs_f64().max(1e-12)
    );
}
