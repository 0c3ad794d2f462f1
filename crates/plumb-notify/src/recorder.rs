//! A [`Transport`] for unit tests: records each request and answers from a script.

use std::sync::Mutex;

use crate::{HttpRequest, HttpResponse, NotifyError, Transport};

/// Records requests; answers each with the next scripted response, then with `200 {}`.
#[derive(Default)]
pub struct Recorder {
    /// Requests in the order they were sent.
    pub requests: Mutex<Vec<HttpRequest>>,
    /// Responses to give, first first.
    pub script: Mutex<Vec<HttpResponse>>,
}

impl Recorder {
    /// A recorder whose answers are `responses` in order.
    pub fn answering(responses: Vec<HttpResponse>) -> Self {
        Recorder {
            requests: Mutex::default(),
            script: Mutex::new(responses),
        }
    }

    /// The requests sent so far.
    pub fn sent(&self) -> Vec<HttpRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The body of request `i` as JSON (`Null` when it is not JSON).
    pub fn json(&self, i: usize) -> serde_json::Value {
        self.sent()
            .get(i)
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or_default()
    }
}

impl Transport for Recorder {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, NotifyError> {
        if let Ok(mut r) = self.requests.lock() {
            r.push(req.clone());
        }
        let next = self.script.lock().ok().and_then(|mut s| {
            if s.is_empty() {
                None
            } else {
                Some(s.remove(0))
            }
        });
        Ok(next.unwrap_or(HttpResponse {
            status: 200,
            body: b"{}".to_vec(),
        }))
    }
}
