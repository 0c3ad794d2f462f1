//! Helm's `lookup apiVersion kind namespace name` against a cluster.
//!
//! A caller that has a cluster implements [`Lookup`] (plumb's controller does, through the
//! identity the release applies with). Each render wraps it in a [`Session`]: answers are
//! cached for the render, and the render may make at most [`LookupLimits::max_calls`]
//! uncached lookups within [`LookupLimits::time`]. Without a cluster (`plumb helm template`,
//! `helm template`) `lookup` answers an empty map.
//!
//! Semantics are Helm's: an empty name lists (a `…List` map with `items`), an empty
//! namespace means cluster-scoped or all namespaces, a missing object (or an unknown kind)
//! is an empty map, and any other failure fails the render.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::HelmError;
use crate::value::Value;

/// What one `lookup` call asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupRequest {
    /// `apiVersion` (`v1`, `apps/v1`).
    pub api_version: String,
    /// `kind` (`ConfigMap`).
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects or all namespaces.
    pub namespace: String,
    /// Name; empty to list.
    pub name: String,
}

impl fmt::Display for LookupRequest {
    /// `v1 ConfigMap ns/name`, `v1 ConfigMap ns/*` for a list, no namespace when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "*"
        } else {
            &self.name
        };
        write!(f, "{} {} ", self.api_version, self.kind)?;
        if self.namespace.is_empty() {
            write!(f, "{name}")
        } else {
            write!(f, "{}/{name}", self.namespace)
        }
    }
}

/// How much a render may ask the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupLimits {
    /// Uncached lookups per render.
    pub max_calls: usize,
    /// Wall time of all lookups of a render, from the first one.
    pub time: Duration,
}

impl Default for LookupLimits {
    fn default() -> Self {
        LookupLimits {
            max_calls: 100,
            time: Duration::from_secs(30),
        }
    }
}

/// Answers `lookup` from a cluster.
pub trait Lookup {
    /// The object (or, with an empty name, the list) as the API server returns it, or an
    /// empty map when it does not exist. Must give up by `deadline`. Errors are
    /// [`HelmError::Lookup`], naming the object and never its data.
    fn lookup(
        &self,
        req: &LookupRequest,
        deadline: Instant,
    ) -> Result<serde_json::Value, HelmError>;

    /// The budget of one render (the defaults unless overridden).
    fn limits(&self) -> LookupLimits {
        LookupLimits::default()
    }
}

/// One render's use of a [`Lookup`]: cache, call count, deadline.
pub struct Session<'l> {
    inner: &'l dyn Lookup,
    limits: LookupLimits,
    calls: Cell<usize>,
    deadline: Cell<Option<Instant>>,
    cache: RefCell<HashMap<LookupRequest, Value>>,
}

impl<'l> Session<'l> {
    /// A fresh session over `inner` with its limits.
    pub fn new(inner: &'l dyn Lookup) -> Self {
        Session {
            inner,
            limits: inner.limits(),
            calls: Cell::new(0),
            deadline: Cell::new(None),
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// Answers `req`, from the cache when it was asked before in this render.
    pub fn get(&self, req: LookupRequest) -> Result<Value, HelmError> {
        if let Some(v) = self.cache.borrow().get(&req) {
            return Ok(v.clone());
        }
        let fail = |msg: String| HelmError::Lookup {
            object: req.to_string(),
            msg,
        };
        if self.calls.get() >= self.limits.max_calls {
            return Err(fail(format!(
                "more than {} lookups in one render",
                self.limits.max_calls
            )));
        }
        self.calls.set(self.calls.get() + 1);
        let deadline = match self.deadline.get() {
            Some(d) => d,
            None => {
                let d = Instant::now() + self.limits.time;
                self.deadline.set(Some(d));
                d
            }
        };
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "the lookups of this render took more than {:?}",
                self.limits.time
            )));
        }
        let json = self.inner.lookup(&req, deadline)?;
        // The answer counts against the render's byte budget like any made value.
        let size = serde_json::to_vec(&json).map_or(0, |b| b.len());
        plumb_template::budget::charge_bytes(size as u64).map_err(fail)?;
        let v = Value::from_json(&json);
        self.cache.borrow_mut().insert(req, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Counts calls; answers a fixed object for `cm`, empty otherwise.
    struct Fake {
        calls: Cell<usize>,
        limits: LookupLimits,
        slow: Duration,
    }

    impl Lookup for Fake {
        fn lookup(&self, req: &LookupRequest, _: Instant) -> Result<serde_json::Value, HelmError> {
            self.calls.set(self.calls.get() + 1);
            std::thread::sleep(self.slow);
            if req.name == "secret" {
                return Err(HelmError::Lookup {
                    object: req.to_string(),
                    msg: "forbidden".into(),
                });
            }
            Ok(if req.name == "cm" {
                json!({"kind": "ConfigMap", "data": {"k": "v"}})
            } else {
                json!({})
            })
        }
        fn limits(&self) -> LookupLimits {
            self.limits
        }
    }

    fn req(ns: &str, name: &str) -> LookupRequest {
        LookupRequest {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn fake(max_calls: usize, time: Duration, slow: Duration) -> Fake {
        Fake {
            calls: Cell::new(0),
            limits: LookupLimits { max_calls, time },
            slow,
        }
    }

    #[test]
    fn caches_per_session() {
        let f = fake(10, Duration::from_secs(5), Duration::ZERO);
        let s = Session::new(&f);
        for _ in 0..3 {
            let v = s.get(req("a", "cm")).unwrap();
            assert_eq!(
                v.to_json(),
                json!({"kind": "ConfigMap", "data": {"k": "v"}})
            );
        }
        assert_eq!(f.calls.get(), 1);
        // A new render asks again.
        Session::new(&f).get(req("a", "cm")).unwrap();
        assert_eq!(f.calls.get(), 2);
    }

    #[test]
    fn call_budget() {
        let f = fake(2, Duration::from_secs(5), Duration::ZERO);
        let s = Session::new(&f);
        s.get(req("a", "x")).unwrap();
        s.get(req("a", "y")).unwrap();
        s.get(req("a", "x")).unwrap();
        let e = s.get(req("a", "z")).unwrap_err().to_string();
        assert_eq!(
            e,
            "lookup v1 ConfigMap a/z: more than 2 lookups in one render"
        );
    }

    #[test]
    fn time_budget() {
        let f = fake(10, Duration::from_millis(50), Duration::from_millis(60));
        let s = Session::new(&f);
        s.get(req("", "x")).unwrap();
        let e = s.get(req("", "")).unwrap_err().to_string();
        assert_eq!(
            e,
            "lookup v1 ConfigMap *: the lookups of this render took more than 50ms"
        );
    }

    #[test]
    fn errors_are_not_cached_and_name_the_object() {
        let f = fake(10, Duration::from_secs(5), Duration::ZERO);
        let s = Session::new(&f);
        let e = s.get(req("ns", "secret")).unwrap_err().to_string();
        assert_eq!(e, "lookup v1 ConfigMap ns/secret: forbidden");
        assert!(s.get(req("ns", "secret")).is_err());
        assert_eq!(f.calls.get(), 2);
    }
}
