//! Object identity and apply ordering.

use std::fmt;

use serde_json::Value;

use crate::Error;

/// The identity of a Kubernetes object: group, kind, namespace, name (and the version it
/// was rendered with, which is not part of the identity).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// API version the object was written in (`v1`, `v1beta1`, ...).
    pub version: String,
}

impl ObjectRef {
    /// Reads the identity of a rendered object.
    pub fn from_object(obj: &Value) -> Result<Self, Error> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidObject("object without apiVersion".into()))?;
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidObject(format!("{api_version} object without kind")))?;
        let meta = obj.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidObject(format!("{kind} without metadata.name")))?;
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let (group, version) = split_api_version(api_version);
        Ok(ObjectRef {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: version.to_string(),
        })
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Identity without the version, for set comparisons across API versions.
    pub fn key(&self) -> (String, String, String, String) {
        (
            self.group.clone(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }

    /// The apply stage of this kind (see [`Stage`]).
    pub fn stage(&self) -> Stage {
        stage_of(&self.group, &self.kind)
    }
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name` or `Kind/name`, as Flux prints objects in events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Splits `group/version` (`v1` alone is the core group).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// Apply stages, in order. Flux applies cluster definitions first and waits for them,
/// then classes, then everything else; admission webhooks go last so that a webhook
/// whose backend is in the same revision does not block the objects before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CRDs, Namespaces, ClusterRoles: applied first and waited for.
    Definitions,
    /// `*Class` kinds (StorageClass, IngressClass, PriorityClass, ...).
    Classes,
    /// Everything else.
    Resources,
    /// Mutating and validating webhook configurations.
    Webhooks,
}

fn stage_of(group: &str, kind: &str) -> Stage {
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("", "Namespace")
        | ("rbac.authorization.k8s.io", "ClusterRole") => Stage::Definitions,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => Stage::Webhooks,
        (_, k) if k.ends_with("Class") => Stage::Classes,
        _ => Stage::Resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_and_stage() {
        let o = ObjectRef::from_object(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod"}
        }))
        .unwrap();
        assert_eq!(o.to_string(), "Deployment/prod/web");
        assert_eq!(o.api_version(), "apps/v1");
        assert_eq!(o.stage(), Stage::Resources);
        let ns = ObjectRef::from_object(&json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "prod"}}))
        .unwrap();
        assert_eq!((ns.group.as_str(), ns.stage()), ("", Stage::Definitions));
        assert_eq!(stage_of("storage.k8s.io", "StorageClass"), Stage::Classes);
        assert_eq!(
            stage_of(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration"
            ),
            Stage::Webhooks
        );
        assert!(ObjectRef::from_object(&json!({"kind": "X"})).is_err());
    }
}
