//! The inventory of applied objects (`status.inventory`) and its id format.
//!
//! An entry id is `<namespace>_<name>_<group>_<kind>`, the encoding of cli-utils'
//! `object.ObjMetadata` that Flux's ssa package uses: the namespace is empty for
//! cluster-scoped objects, the group is empty for the core group, and every `:` in the name
//! (as in RBAC names like `system:metrics`) is written as `__`. Parsing takes the namespace up to
//! the first `_`, the kind after the last `_`, the group before that, and the rest is the name;
//! a name that still contains `_` after decoding `__` is rejected, as cli-utils does.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;

const FIELD_SEPARATOR: char = '_';
const COLON_TRANSCODED: &str = "__";

/// Objects applied by a reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceInventory {
    /// The applied objects.
    pub entries: Vec<ResourceRef>,
}

/// One applied object: its id and API version.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct ResourceRef {
    /// `<namespace>_<name>_<group>_<kind>`, see [`ObjMetadata`].
    pub id: String,
    /// API version of the object's kind, e.g. `v1`.
    pub v: String,
}

impl ResourceRef {
    /// Builds an entry from object metadata and the version of its kind.
    pub fn new(meta: &ObjMetadata, version: impl Into<String>) -> Self {
        Self {
            id: meta.to_string(),
            v: version.into(),
        }
    }

    /// Parses the id of this entry.
    pub fn obj_metadata(&self) -> Result<ObjMetadata, Error> {
        self.id.parse()
    }
}

/// Identity of an object in an inventory (cli-utils `ObjMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjMetadata {
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// API group; empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

impl ObjMetadata {
    /// Creates object metadata from its four parts.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        group: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for ObjMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name.replace(':', COLON_TRANSCODED);
        write!(
            f,
            "{}{FIELD_SEPARATOR}{name}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}",
            self.namespace, self.group, self.kind
        )
    }
}

impl FromStr for ObjMetadata {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| Error::InvalidInventoryId {
            id: s.to_owned(),
            reason: why.to_owned(),
        };
        let (namespace, rest) = s
            .split_once(FIELD_SEPARATOR)
            .ok_or_else(|| bad("no '_' after the namespace"))?;
        let (rest, kind) = rest
            .rsplit_once(FIELD_SEPARATOR)
            .ok_or_else(|| bad("no '_' before the kind"))?;
        let (name, group) = rest
            .rsplit_once(FIELD_SEPARATOR)
            .ok_or_else(|| bad("no '_' before the group"))?;
        let name = name.replace(COLON_TRANSCODED, ":");
        if name.contains(FIELD_SEPARATOR) {
            return Err(bad("the name contains a single '_'"));
        }
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if kind.is_empty() {
            return Err(bad("the kind is empty"));
        }
        Ok(Self::new(namespace, name, group, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_cli_utils() {
        let m = ObjMetadata::new("default", "podinfo", "apps", "Deployment");
        assert_eq!(m.to_string(), "default_podinfo_apps_Deployment");
        let ns = ObjMetadata::new("", "flux-system", "", "Namespace");
        assert_eq!(ns.to_string(), "_flux-system__Namespace");
        let rbac = ObjMetadata::new(
            "",
            "system:metrics",
            "rbac.authorization.k8s.io",
            "ClusterRole",
        );
        assert_eq!(
            rbac.to_string(),
            "_system__metrics_rbac.authorization.k8s.io_ClusterRole"
        );
    }

    #[test]
    fn round_trips() {
        for m in [
            ObjMetadata::new("default", "podinfo", "apps", "Deployment"),
            ObjMetadata::new("", "flux-system", "", "Namespace"),
            ObjMetadata::new(
                "",
                "a:b:c",
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
            ),
            ObjMetadata::new("kube-system", "cm", "", "ConfigMap"),
            ObjMetadata::new(
                "",
                "gitrepositories.source.toolkit.fluxcd.io",
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
            ),
        ] {
            let s = m.to_string();
            assert_eq!(s.parse::<ObjMetadata>().unwrap(), m, "{s}");
        }
    }

    #[test]
    fn parses_flux_ids() {
        let m: ObjMetadata = "_podinfo__Namespace".parse().unwrap();
        assert_eq!(m, ObjMetadata::new("", "podinfo", "", "Namespace"));
        let m: ObjMetadata = "apps_podinfo_apps_Deployment".parse().unwrap();
        assert_eq!(m, ObjMetadata::new("apps", "podinfo", "apps", "Deployment"));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "default",
            "default_name",
            "ns_na_me_apps_Deployment",
            "ns__apps_Kind",
            "ns_name_apps_",
        ] {
            let err = bad.parse::<ObjMetadata>().unwrap_err();
            assert!(err.to_string().contains("inventory id"), "{bad}: {err}");
        }
    }

    #[test]
    fn resource_ref_round_trip() {
        let m = ObjMetadata::new("default", "podinfo", "apps", "Deployment");
        let r = ResourceRef::new(&m, "v1");
        assert_eq!(r.v, "v1");
        assert_eq!(r.obj_metadata().unwrap(), m);
    }
}
