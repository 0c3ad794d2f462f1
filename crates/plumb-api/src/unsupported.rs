//! Spec fields plumb accepts and preserves but does not act on yet.
//!
//! Controllers call [`unsupported_fields`] (or the per-kind helpers) and report every returned
//! path as "spec.X is not supported yet" in a condition message and an event, so that a user
//! never has a setting silently ignored. The list is the data table [`UNSUPPORTED`]; remove a
//! row when the feature lands.

use serde::Serialize;
use serde_json::Value;

/// When a field counts as used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The field is present and not null, false, empty string, empty list or empty map.
    Set,
    /// The field is present with any non-null value, `false` included.
    Present,
    /// The field is a string other than the listed values (e.g. a provider other than
    /// `generic`).
    NotOneOf(&'static [&'static str]),
    /// The field is the given string (e.g. `type: oci`).
    Equals(&'static str),
    /// The field is `false`.
    False,
}

/// One row of the table: kind, dotted JSON path from the object root, and condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// Kind, e.g. `GitRepository`.
    pub kind: &'static str,
    /// Dotted path from the object root, e.g. `spec.verify`.
    pub path: &'static str,
    /// When the field counts as used.
    pub when: When,
}

const fn row(kind: &'static str, path: &'static str, when: When) -> Unsupported {
    Unsupported { kind, path, when }
}

/// The fields plumb does not implement yet.
pub const UNSUPPORTED: &[Unsupported] = &[
    row(
        "GitRepository",
        "spec.provider",
        When::NotOneOf(&["generic", "github"]),
    ),
    row("GitRepository", "spec.serviceAccountName", When::Set),
    row(
        "OCIRepository",
        "spec.provider",
        When::NotOneOf(&["generic", "aws"]),
    ),
    row(
        "HelmRepository",
        "spec.provider",
        When::NotOneOf(&["generic", "aws"]),
    ),
    // Workload identity for azureeventhub, azuredevops and googlepubsub.
    row("Provider", "spec.serviceAccountName", When::Set),
    row(
        "ImageRepository",
        "spec.provider",
        When::NotOneOf(&["generic", "aws"]),
    ),
    // SSH commit signing is not implemented.
    row(
        "ImageUpdateAutomation",
        "spec.git.commit.signingKey.type",
        When::Equals("ssh"),
    ),
];

fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, key| v.get(key))
}

fn is_used(value: &Value, when: When) -> bool {
    match when {
        When::Set => match value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Number(_) => true,
        },
        When::Present => !value.is_null(),
        When::NotOneOf(allowed) => value
            .as_str()
            .is_some_and(|s| !s.is_empty() && !allowed.contains(&s)),
        When::Equals(x) => value.as_str() == Some(x),
        When::False => value == &Value::Bool(false),
    }
}

/// Paths (`spec.X`) of fields set on an object of `kind` (given as JSON with `spec` at the
/// root) that plumb does not act on yet, in table order.
pub fn unsupported_fields(kind: &str, object: &Value) -> Vec<&'static str> {
    UNSUPPORTED
        .iter()
        .filter(|u| u.kind == kind)
        .filter(|u| lookup(object, u.path).is_some_and(|v| is_used(v, u.when)))
        .map(|u| u.path)
        .collect()
}

/// [`unsupported_fields`] for a typed object.
pub fn unsupported_fields_of<K>(object: &K) -> Vec<&'static str>
where
    K: kube::Resource<DynamicType = ()> + Serialize,
{
    let kind = K::kind(&());
    match serde_json::to_value(object) {
        Ok(v) => unsupported_fields(&kind, &v),
        Err(_) => Vec::new(),
    }
}

/// The message for a list of unsupported paths, e.g.
/// `spec.verify is not supported yet; spec.sparseCheckout is not supported yet`.
/// Empty when the list is empty.
pub fn message(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| format!("{p} is not supported yet"))
        .collect::<Vec<_>>()
        .join("; ")
}

macro_rules! impl_unsupported {
    ($($kind:ty),*) => {$(
        impl $kind {
            /// Paths of set fields plumb does not act on yet (see [`crate::unsupported`]).
            pub fn unsupported_fields(&self) -> Vec<&'static str> {
                unsupported_fields_of(self)
            }
        }
    )*};
}

impl_unsupported!(
    crate::GitRepository,
    crate::HelmRepository,
    crate::Kustomization,
    crate::HelmRelease,
    crate::Receiver,
    crate::OCIRepository,
    crate::HelmChart,
    crate::ArtifactGenerator,
    crate::Provider,
    crate::Alert,
    crate::ImageRepository,
    crate::ImagePolicy,
    crate::ImageUpdateAutomation
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_set_fields_only() {
        let repo = json!({"spec": {
            "url": "https://example.com/x.git", "interval": "1m",
            "verify": {"secretRef": {"name": "keys"}},
            "sparseCheckout": [],
            "provider": "generic"
        }});
        assert!(unsupported_fields("GitRepository", &repo).is_empty());
        let repo = json!({"spec": {"provider": "azure", "sparseCheckout": ["a"]}});
        assert_eq!(
            unsupported_fields("GitRepository", &repo),
            vec!["spec.provider"]
        );
        let hr = json!({"spec": {"chart": {"spec": {"verify": {"provider": "cosign"}}}, "persistentClient": false}});
        // persistentClient only tunes helm-controller's clients: accepted, no effect; verify
        // is served (cosign with keys, through the HelmChart).
        assert!(unsupported_fields("HelmRelease", &hr).is_empty());
        let hr = json!({"spec": {"postRenderers": [], "chart": {"spec": {"chart": "x"}}}});
        assert!(unsupported_fields("HelmRelease", &hr).is_empty());
        // Every action option is served but the Helm 4 / client-side ones below.
        let hr = json!({"spec": {"upgrade": {"preserveValues": true, "cleanupOnFail": true,
            "strategy": {"name": "RetryOnFailure"}, "disableTakeOwnership": true,
            "chartNameChangeStrategy": "InPlaceUpdate", "disableOpenAPIValidation": true},
            "rollback": {"recreate": true, "disableWaitForJobs": true},
            "uninstall": {"deletionPropagation": "orphan"}, "waitStrategy": {"name": "poller"}}});
        assert!(unsupported_fields("HelmRelease", &hr).is_empty());
        // postRenderStrategy, waitStrategy legacy and client-side apply are served.
        let hr = json!({"spec": {"waitStrategy": {"name": "legacy"},
            "postRenderStrategy": "separate", "install": {"serverSideApply": false},
            "upgrade": {"serverSideApply": "disabled"},
            "rollback": {"serverSideApply": "disabled"}}});
        assert!(unsupported_fields("HelmRelease", &hr).is_empty());
        let ks = json!({"spec": {"ignore": [{"paths": ["/spec/replicas"]}],
            "buildMetadata": ["originAnnotations"], "postBuild": {"substituteStrategy": "Always"}}});
        assert!(
            unsupported_fields("Kustomization", &ks).is_empty(),
            "ignore, buildMetadata and substituteStrategy are served"
        );
        let repo = json!({"spec": {"type": "oci", "provider": "generic"}});
        assert!(unsupported_fields("HelmRepository", &repo).is_empty());
        let repo = json!({"spec": {"type": "oci", "provider": "azure"}});
        assert_eq!(
            unsupported_fields("HelmRepository", &repo),
            vec!["spec.provider"]
        );
        assert!(unsupported_fields("Receiver", &repo).is_empty());
        let oci = json!({"spec": {"provider": "azure", "verify": {"provider": "cosign"},
            "insecure": true, "layerSelector": {"operation": "copy"}}});
        assert_eq!(
            unsupported_fields("OCIRepository", &oci),
            vec!["spec.provider"]
        );
        let ecr = json!({"spec": {"provider": "aws"}});
        assert!(
            unsupported_fields("OCIRepository", &ecr).is_empty(),
            "provider aws is served (ECR)"
        );
    }

    #[test]
    fn typed_objects_report_their_fields() {
        let ks = crate::Kustomization::new(
            "x",
            serde_json::from_value(json!({
                "interval": "1m", "prune": true,
                "sourceRef": {"kind": "GitRepository", "name": "r"},
                "decryption": {"provider": "sops"}
            }))
            .unwrap(),
        );
        assert!(
            ks.unsupported_fields().is_empty(),
            "spec.decryption is served"
        );
        let repo = crate::HelmRepository::new(
            "x",
            serde_json::from_value(json!({"url": "https://charts.example.com"})).unwrap(),
        );
        assert!(
            repo.unsupported_fields().is_empty(),
            "default provider is generic"
        );
    }

    #[test]
    fn message_lists_every_path() {
        assert_eq!(message(&[]), "");
        assert_eq!(
            message(&["spec.decryption", "spec.healthCheckExprs"]),
            "spec.decryption is not supported yet; spec.healthCheckExprs is not supported yet"
        );
    }
}
