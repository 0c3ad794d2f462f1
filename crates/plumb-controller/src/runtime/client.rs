//! The Kubernetes client plumb uses: kube's default stack plus two tower layers, a
//! client-side token bucket (`--kube-api-qps`, `--kube-api-burst`, like client-go's
//! flowcontrol limiter that Flux configures) and a request counter by verb and status code
//! (`plumb_kube_api_requests_total`).
//!
//! The token bucket is hand-written: tower's `RateLimit` is a fixed window without burst,
//! and the limiter must wait inside `poll_ready` because kube's stack is not `Clone`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::ClientBuilder;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Client-side request rate limits.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Sustained requests per second (0 or less: unlimited).
    pub qps: f32,
    /// Requests allowed in a burst above `qps`.
    pub burst: u32,
}

impl Default for ApiLimits {
    /// Flux's defaults: 50 QPS, burst 300.
    fn default() -> Self {
        ApiLimits {
            qps: 50.0,
            burst: 300,
        }
    }
}

/// Builds a client from `config` with the rate limit and request metrics layers.
pub fn build(
    config: kube::Config,
    limits: ApiLimits,
    metrics: Arc<Metrics>,
) -> Result<Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&CountLayer { metrics })
        .with_layer(&RateLimitLayer { limits })
        .build())
}

/// Layer of [`RateLimit`].
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: ApiLimits,
}

impl RateLimitLayer {
    /// A token bucket with `limits`.
    pub fn new(limits: ApiLimits) -> Self {
        RateLimitLayer { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        let burst = f64::from(self.limits.burst.max(1));
        RateLimit {
            inner,
            qps: f64::from(self.limits.qps),
            burst,
            tokens: burst,
            last: Instant::now(),
            sleep: None,
            reserved: false,
        }
    }
}

/// A token bucket in front of a service: `poll_ready` waits for a token.
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    reserved: bool,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.reserved && self.qps > 0.0 {
            if let Some(sleep) = self.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            let now = Instant::now();
            let refill = now.duration_since(self.last).as_secs_f64() * self.qps;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                self.reserved = true;
            } else {
                let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.qps);
                self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.reserved = false;
        self.inner.call(req)
    }
}

/// Layer of [`Count`].
#[derive(Debug, Clone)]
pub struct CountLayer {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts requests by verb and response status code.
#[derive(Debug)]
pub struct Count<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for Count<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verb = verb(&req);
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics.api_request(verb, &code);
            res
        })
    }
}

/// The Kubernetes verb of a request (client-go's names; a GET with `watch=true` is a watch).
fn verb<B>(req: &Request<B>) -> &'static str {
    let watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match req.method().as_str() {
        "GET" if watch => "WATCH",
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_burst_then_qps() {
        let svc =
            tower::service_fn(|_req: Request<()>| async { Ok::<_, std::convert::Infallible>(()) });
        let mut limited = RateLimitLayer::new(ApiLimits {
            qps: 10.0,
            burst: 5,
        })
        .layer(svc);
        let start = Instant::now();
        for _ in 0..5 {
            std::future::poll_fn(|cx| limited.poll_ready(cx))
                .await
                .unwrap();
            limited.call(Request::new(())).await.unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "burst is immediate"
        );
        for _ in 0..10 {
            std::future::poll_fn(|cx| limited.poll_ready(cx))
                .await
                .unwrap();
            limited.call(Request::new(())).await.unwrap();
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(990) && took < Duration::from_millis(1100),
            "10 requests over the burst at 10 QPS take about a second, took {took:?}"
        );
    }

    #[test]
    fn verbs() {
        let r = |m: &str, uri: &str| Request::builder().method(m).uri(uri).body(()).unwrap();
        assert_eq!(verb(&r("GET", "/api/v1/pods?watch=true&x=1")), "WATCH");
        assert_eq!(verb(&r("GET", "/api/v1/pods")), "GET");
        assert_eq!(verb(&r("PATCH", "/api/v1/pods/a")), "PATCH");
    }
}
