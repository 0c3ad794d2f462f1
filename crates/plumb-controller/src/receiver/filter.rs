//! Receiver `spec.resourceFilter` and `spec.resources[].filter` (Flux's notification-controller):
//! CEL expressions over `res` (the resource's `apiVersion`, `kind` and `metadata`) and `req`
//! (the webhook body when it is JSON, else an empty map). A resource is reconciled only when
//! every expression that applies to it is true; an expression that fails to evaluate fails
//! the call for that resource, naming the expression (never the body).

use std::sync::Arc;

use plumb_api::Receiver;
use plumb_api::receiver::ReceiverResource;
use serde_json::Value;

use crate::cel::{CelError, Expression};

/// The variables of a Receiver filter (`claims`: the verified OIDC token claims of a
/// `generic-oidc` call, an empty map otherwise).
pub const FILTER_VARS: [&str; 3] = ["res", "req", "claims"];

/// Every filter of a Receiver compiled (cached per expression): the first bad one is the
/// error, a terminal configuration error for the Receiver.
pub fn validate(rcv: &Receiver) -> Result<(), CelError> {
    let exprs = std::iter::once(rcv.spec.resource_filter.as_deref())
        .chain(rcv.spec.resources.iter().map(|r| r.filter.as_deref()));
    for src in exprs.flatten().filter(|s| !s.is_empty()) {
        Expression::cached(src, Some(&FILTER_VARS))?;
    }
    Ok(())
}

/// The filters that apply to one resource entry, and the request they read.
pub struct Filters {
    exprs: Vec<Arc<Expression>>,
    req: Arc<Value>,
    claims: Arc<Value>,
}

impl Filters {
    /// The filters for `res` of `rcv` (`None` when none applies), with `req` the parsed
    /// body and `claims` the verified token claims.
    pub fn for_resource(
        rcv: &Receiver,
        res: &ReceiverResource,
        req: &Arc<Value>,
        claims: &Arc<Value>,
    ) -> Result<Option<Filters>, CelError> {
        let exprs = [rcv.spec.resource_filter.as_deref(), res.filter.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(|s| Expression::cached(s, Some(&FILTER_VARS)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!exprs.is_empty()).then(|| Filters {
            exprs,
            req: Arc::clone(req),
            claims: Arc::clone(claims),
        }))
    }

    /// Whether the resource `res` (`apiVersion`, `kind`, `metadata`) passes every filter.
    pub fn accepts(&self, res: &Value) -> Result<bool, CelError> {
        for e in &self.exprs {
            if !e.eval_bool(&[("res", res), ("req", &self.req), ("claims", &self.claims)])? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether a Receiver has any filter (the body is parsed only then).
pub fn any(rcv: &Receiver) -> bool {
    rcv.spec
        .resource_filter
        .as_deref()
        .is_some_and(|s| !s.is_empty())
        || rcv
            .spec
            .resources
            .iter()
            .any(|r| r.filter.as_deref().is_some_and(|s| !s.is_empty()))
}

/// The body as `req`: its JSON when the Content-Type says `application/json`, else an
/// empty map (as Flux). A JSON body that does not parse is an error.
pub fn request_value(headers: &http::HeaderMap, body: &[u8]) -> Result<Value, String> {
    let json = headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|e| format!("failed to parse request body as JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn receiver(top: Option<&str>, per: Option<&str>) -> Receiver {
        let mut spec = json!({"type": "generic", "secretRef": {"name": "t"},
            "resources": [{"kind": "GitRepository", "name": "*", "matchLabels": {"a": "b"}}]});
        if let Some(t) = top {
            spec["resourceFilter"] = json!(t);
        }
        if let Some(p) = per {
            spec["resources"][0]["filter"] = json!(p);
        }
        Receiver::new("r", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn filters_stack_and_read_res_and_req() {
        let rcv = receiver(
            Some("res.metadata.name.startsWith(req.prefix)"),
            Some("res.metadata.labels.tier == 'web'"),
        );
        assert!(any(&rcv));
        validate(&rcv).unwrap();
        let req = Arc::new(json!({"prefix": "app-"}));
        let f = Filters::for_resource(&rcv, &rcv.spec.resources[0], &req, &Arc::new(json!({})))
            .unwrap()
            .unwrap();
        let res = |name: &str, tier: &str| {
            json!({"apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository", "metadata": {"name": name, "labels": {"tier": tier}}})
        };
        assert!(f.accepts(&res("app-1", "web")).unwrap());
        assert!(
            !f.accepts(&res("other", "web")).unwrap(),
            "top-level filter"
        );
        assert!(
            !f.accepts(&res("app-2", "db")).unwrap(),
            "per-resource filter"
        );
        let none = receiver(None, None);
        assert!(!any(&none));
        assert!(
            Filters::for_resource(&none, &none.spec.resources[0], &req, &Arc::new(json!({})))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_filters_and_bodies() {
        let err = validate(&receiver(Some("res.metadata.name =="), None)).unwrap_err();
        assert!(
            err.to_string()
                .contains("failed to parse the CEL expression"),
            "{err}"
        );
        let err = validate(&receiver(None, Some("body.x == 1"))).unwrap_err();
        assert!(
            err.to_string().contains("undeclared reference to 'body'"),
            "{err}"
        );
        let rcv = receiver(Some("res.metadata.name"), None);
        let f = Filters::for_resource(
            &rcv,
            &rcv.spec.resources[0],
            &Arc::new(json!({})),
            &Arc::new(json!({})),
        )
        .unwrap()
        .unwrap();
        let err = f.accepts(&json!({"metadata": {"name": "x"}})).unwrap_err();
        assert!(matches!(err, CelError::NotBoolean { .. }), "{err}");
        let mut h = http::HeaderMap::new();
        assert_eq!(request_value(&h, b"not json").unwrap(), json!({}));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(request_value(&h, br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert!(request_value(&h, b"{").is_err());
    }
}
