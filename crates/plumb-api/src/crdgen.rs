//! Generation of the CustomResourceDefinitions and their stable YAML rendering.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::Error;
use crate::{Alert, Provider};
use crate::{
    ArtifactGenerator, ExternalArtifact, GitRepository, HelmChart, HelmRelease, HelmRepository,
    Kustomization, OCIRepository, Receiver,
};
use crate::{ImagePolicy, ImageRepository, ImageUpdateAutomation};

/// All CRDs plumb serves, in a fixed order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        finish(GitRepository::crd()),
        finish(HelmRepository::crd()),
        finish(OCIRepository::crd()),
        finish(HelmChart::crd()),
        finish(Kustomization::crd()),
        finish(HelmRelease::crd()),
        finish(Receiver::crd()),
        finish(ExternalArtifact::crd()),
        finish(ArtifactGenerator::crd()),
        finish(Provider::crd()),
        finish(Alert::crd()),
        finish(ImageRepository::crd()),
        finish(ImagePolicy::crd()),
        finish(ImageUpdateAutomation::crd()),
    ]
}

/// Post-processing that the derive cannot express:
/// * Flux defaults `status` to `{observedGeneration: -1}` so that kstatus sees a fresh object as
///   not yet observed;
/// * Flux's root schema declares `apiVersion`, `kind` and `metadata` like every
///   controller-gen CRD.
fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let props = root.properties.get_or_insert_with(Default::default);
        if let Some(status) = props.get_mut("status") {
            status.default = Some(JSON(json!({ "observedGeneration": -1 })));
            if let Some(items) = status
                .properties
                .as_mut()
                .and_then(|p| p.get_mut("conditions"))
                .and_then(|c| c.items.as_mut())
                && let JSONSchemaPropsOrArray::Schema(item) = items
            {
                validate_condition(item);
            }
        }
        props.insert(
            "apiVersion".to_owned(),
            string_prop(
                "APIVersion defines the versioned schema of this representation of an object.",
            ),
        );
        props.insert(
            "kind".to_owned(),
            string_prop(
                "Kind is a string value representing the REST resource this object represents.",
            ),
        );
        props.insert(
            "metadata".to_owned(),
            JSONSchemaProps {
                type_: Some("object".to_owned()),
                ..Default::default()
            },
        );
    }
    crd
}

/// The validation `metav1.Condition` carries in controller-gen CRDs (and so in Flux's).
fn validate_condition(item: &mut JSONSchemaProps) {
    let Some(props) = item.properties.as_mut() else {
        return;
    };
    if let Some(p) = props.get_mut("message") {
        p.max_length = Some(32768);
    }
    if let Some(p) = props.get_mut("observedGeneration") {
        p.minimum = Some(0.0);
    }
    if let Some(p) = props.get_mut("reason") {
        p.max_length = Some(1024);
        p.min_length = Some(1);
        p.pattern = Some("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$".to_owned());
    }
    if let Some(p) = props.get_mut("status") {
        p.enum_ = Some(
            ["True", "False", "Unknown"]
                .into_iter()
                .map(|v| JSON(json!(v)))
                .collect(),
        );
    }
    if let Some(p) = props.get_mut("type") {
        p.max_length = Some(316);
        p.pattern = Some(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                .to_owned(),
        );
    }
}

fn string_prop(description: &str) -> JSONSchemaProps {
    JSONSchemaProps {
        description: Some(description.to_owned()),
        type_: Some("string".to_owned()),
        ..Default::default()
    }
}

/// The file name Flux uses for a CRD: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Renders one CRD as a YAML document (without the `---` separator).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let value: Value = serde_json::to_value(crd).map_err(|e| Error::Render {
        name: name.clone(),
        source: Box::new(e),
    })?;
    serde_saphyr::to_string(&value).map_err(|e| Error::Render {
        name,
        source: Box::new(e),
    })
}

/// Renders all CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}

/// Name of the kustomization file written next to the CRD files.
pub const KUSTOMIZATION_FILE: &str = "kustomization.yaml";

/// The files of a CRD directory (`deploy/crds`): one `<group>_<plural>.yaml` per CRD and a
/// `kustomization.yaml` listing them, as `(file name, content)` in a fixed order.
pub fn crd_files() -> Result<Vec<(String, String)>, Error> {
    let mut files = Vec::new();
    let mut kustomization = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for crd in crds() {
        let name = crd_file_name(&crd);
        kustomization.push_str(&format!("- {name}\n"));
        files.push((name, format!("---\n{}", crd_yaml(&crd)?)));
    }
    files.push((KUSTOMIZATION_FILE.to_owned(), kustomization));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_columns_and_defaults_match_flux() {
        let crds = crds();
        let by_kind = |k: &str| {
            crds.iter()
                .find(|c| c.spec.names.kind == k)
                .unwrap_or_else(|| panic!("{k}"))
        };
        let expect = [
            (
                "GitRepository",
                "gitrepositories",
                Some("gitrepo"),
                vec!["URL", "Age", "Ready", "Status"],
            ),
            (
                "HelmRepository",
                "helmrepositories",
                Some("helmrepo"),
                vec!["URL", "Age", "Ready", "Status"],
            ),
            (
                "OCIRepository",
                "ocirepositories",
                Some("ocirepo"),
                vec!["URL", "Ready", "Status", "Age"],
            ),
            (
                "HelmChart",
                "helmcharts",
                Some("hc"),
                vec![
                    "Chart",
                    "Version",
                    "Source Kind",
                    "Source Name",
                    "Age",
                    "Ready",
                    "Status",
                ],
            ),
            (
                "Kustomization",
                "kustomizations",
                Some("ks"),
                vec!["Age", "Ready", "Status"],
            ),
            (
                "HelmRelease",
                "helmreleases",
                Some("hr"),
                vec!["Age", "Ready", "Status"],
            ),
            (
                "Receiver",
                "receivers",
                None,
                vec!["Age", "Ready", "Status"],
            ),
            (
                "ExternalArtifact",
                "externalartifacts",
                Some("ea"),
                vec!["Age", "Ready", "Status", "Source"],
            ),
            (
                "ArtifactGenerator",
                "artifactgenerators",
                Some("ag"),
                vec!["Age", "Ready", "Status"],
            ),
        ];
        for (kind, plural, short, columns) in expect {
            let crd = by_kind(kind);
            assert_eq!(crd.spec.names.plural, plural);
            assert_eq!(crd.spec.scope, "Namespaced");
            let shorts = crd.spec.names.short_names.clone().unwrap_or_default();
            assert_eq!(
                shorts,
                short.map(|s| vec![s.to_owned()]).unwrap_or_default()
            );
            assert!(
                crd.spec
                    .names
                    .categories
                    .as_ref()
                    .unwrap()
                    .contains(&"fluxcd".to_owned())
            );
            let v = &crd.spec.versions[0];
            assert!(v.served && v.storage);
            assert!(v.subresources.as_ref().unwrap().status.is_some());
            let cols: Vec<_> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            assert_eq!(cols, columns, "{kind}");
            let root = v
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap();
            let status = &root.properties.as_ref().unwrap()["status"];
            assert_eq!(
                status.default.as_ref().unwrap().0,
                serde_json::json!({"observedGeneration": -1})
            );
        }
        let cond = &by_kind("HelmRelease").spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap()["status"]
            .properties
            .as_ref()
            .unwrap()["conditions"];
        let Some(JSONSchemaPropsOrArray::Schema(item)) = &cond.items else {
            panic!("conditions has no item schema");
        };
        let reason = &item.properties.as_ref().unwrap()["reason"];
        assert_eq!(reason.min_length, Some(1));
        assert_eq!(item.required.as_ref().unwrap().len(), 5);
        let ready = &by_kind("Kustomization").spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()[1];
        assert_eq!(
            ready.json_path,
            ".status.conditions[?(@.type==\"Ready\")].status"
        );
    }

    #[test]
    fn image_kinds_match_flux() {
        let crds = crds();
        let expect = [
            ("ImageRepository", vec!["imgrepo", "imagerepo"], 6),
            ("ImagePolicy", vec!["imgpol", "imagepol"], 5),
            ("ImageUpdateAutomation", vec!["iua", "imgupd", "imgauto"], 4),
        ];
        for (kind, shorts, columns) in expect {
            let crd = crds.iter().find(|c| c.spec.names.kind == kind).unwrap();
            assert_eq!(crd.spec.group, "image.toolkit.fluxcd.io");
            assert_eq!(crd.spec.names.short_names.clone().unwrap(), shorts);
            let cats = crd.spec.names.categories.clone().unwrap();
            assert!(cats.contains(&"fluxcd-images".to_owned()), "{kind}");
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, "v1");
            assert_eq!(
                v.additional_printer_columns.as_ref().unwrap().len(),
                columns
            );
        }
    }

    #[test]
    fn yaml_is_stable_and_parses_back() {
        let a = crds_yaml().unwrap();
        let b = crds_yaml().unwrap();
        assert_eq!(a, b);
        for (name, content) in crd_files().unwrap() {
            if name == KUSTOMIZATION_FILE {
                continue;
            }
            let body = content.strip_prefix("---\n").unwrap();
            let back: CustomResourceDefinition = serde_saphyr::from_str(body).unwrap();
            assert_eq!(crd_file_name(&back), name);
            let expected = crds()
                .into_iter()
                .find(|c| crd_file_name(c) == name)
                .unwrap();
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(&expected).unwrap()
            );
        }
    }
}
