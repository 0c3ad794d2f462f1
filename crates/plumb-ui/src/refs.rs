//! The references that make the fleet graph, per kind, as Flux resolves them: a reference
//! without a namespace names one in the referring object's own namespace.
//!
//! The ImagePolicies an ImageUpdateAutomation's `policySelector` selects depend on other
//! objects' labels, so they are resolved against the store ([`Selector`], see `watch.rs`).

use std::collections::BTreeMap;

use plumb_api::kinds::FluxKind;
use serde_json::Value;

use crate::model::{ObjectSummary, Ref, Rel};

/// Flux's labels on objects a Kustomization applied.
const KS_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
const KS_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// Flux's labels on objects a HelmRelease applied.
const HR_NAME: &str = "helm.toolkit.fluxcd.io/name";
const HR_NAMESPACE: &str = "helm.toolkit.fluxcd.io/namespace";

/// A reference `{kind?, name, namespace?}` at `r` to an object of `r.kind` (or `kind`).
fn named(r: &Value, kind: Option<&str>, own_ns: &str, rel: Rel) -> Option<Ref> {
    let name = r["name"].as_str().filter(|n| !n.is_empty())?;
    let kind = kind.or_else(|| r["kind"].as_str())?;
    let ns = r["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(own_ns);
    Some(Ref {
        id: ObjectSummary::id_of(kind, ns, name),
        rel,
    })
}

fn each(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// Every reference of `obj` (of `kind`, in namespace `ns`) that its own JSON holds.
pub fn refs_of(kind: FluxKind, obj: &Value, ns: &str) -> Vec<Ref> {
    let spec = &obj["spec"];
    let mut out: Vec<Ref> = Vec::new();
    match kind {
        FluxKind::Kustomization => {
            out.extend(named(&spec["sourceRef"], None, ns, Rel::Source));
            out.extend(depends_on(spec, "Kustomization", ns));
        }
        FluxKind::HelmRelease => {
            out.extend(named(
                &spec["chart"]["spec"]["sourceRef"],
                None,
                ns,
                Rel::Chart,
            ));
            out.extend(named(&spec["chartRef"], None, ns, Rel::Chart));
            out.extend(depends_on(spec, "HelmRelease", ns));
        }
        FluxKind::HelmChart => out.extend(named(&spec["sourceRef"], None, ns, Rel::Source)),
        FluxKind::ArtifactGenerator => {
            out.extend(each(&spec["sources"]).filter_map(|s| named(s, None, ns, Rel::Source)));
        }
        FluxKind::ExternalArtifact => {
            out.extend(named(&spec["sourceRef"], None, ns, Rel::GeneratedBy));
        }
        FluxKind::Alert => {
            out.extend(named(
                &spec["providerRef"],
                Some("Provider"),
                ns,
                Rel::Provider,
            ));
            out.extend(watched(&spec["eventSources"], ns));
        }
        FluxKind::Receiver => out.extend(watched(&spec["resources"], ns)),
        FluxKind::ImagePolicy => out.extend(named(
            &spec["imageRepositoryRef"],
            Some("ImageRepository"),
            ns,
            Rel::ImageRepository,
        )),
        FluxKind::ImageUpdateAutomation => {
            out.extend(named(&spec["sourceRef"], None, ns, Rel::Source));
        }
        FluxKind::GitRepository
        | FluxKind::HelmRepository
        | FluxKind::OCIRepository
        | FluxKind::Provider
        | FluxKind::ImageRepository => {}
    }
    out.extend(applied_by(&obj["metadata"]["labels"]));
    out.dedup();
    out
}

/// `spec.dependsOn`: objects of the same kind.
fn depends_on<'a>(spec: &'a Value, kind: &'a str, ns: &'a str) -> impl Iterator<Item = Ref> + 'a {
    each(&spec["dependsOn"]).filter_map(move |d| named(d, Some(kind), ns, Rel::DependsOn))
}

/// Alert `eventSources` / Receiver `resources`: entries naming one object (`*` and
/// label-selected entries name none).
fn watched<'a>(v: &'a Value, ns: &'a str) -> impl Iterator<Item = Ref> + 'a {
    each(v)
        .filter(|r| r["name"].as_str().is_some_and(|n| !n.contains('*')))
        .filter_map(move |r| named(r, None, ns, Rel::Watches))
}

/// The Kustomization or HelmRelease that applied this object, from Flux's labels.
fn applied_by(labels: &Value) -> Vec<Ref> {
    [
        ("Kustomization", KS_NAME, KS_NAMESPACE),
        ("HelmRelease", HR_NAME, HR_NAMESPACE),
    ]
    .into_iter()
    .filter_map(|(kind, name, namespace)| {
        let name = labels[name].as_str()?;
        let ns = labels[namespace].as_str()?;
        Some(Ref {
            id: ObjectSummary::id_of(kind, ns, name),
            rel: Rel::AppliedBy,
        })
    })
    .collect()
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    /// The ImageUpdateAutomation's `spec.policySelector`; none selects every policy of its
    /// namespace, as Flux does.
    pub fn policy_selector(obj: &Value) -> Selector {
        Self::from_json(&obj["spec"]["policySelector"])
    }

    fn from_json(v: &Value) -> Selector {
        let labels = crate::summary::string_map(&v["matchLabels"]);
        let expressions = each(&v["matchExpressions"])
            .map(|e| {
                let values = each(&e["values"])
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                (
                    e["key"].as_str().unwrap_or_default().to_string(),
                    e["operator"].as_str().unwrap_or_default().to_string(),
                    values,
                )
            })
            .collect();
        Selector {
            labels,
            expressions,
        }
    }

    /// Whether `labels` match. An unknown operator matches nothing (the API server rejects
    /// it on write, so only a hand-made object could hold one).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(key, op, values)| {
                let have = labels.get(key);
                match op.as_str() {
                    "In" => have.is_some_and(|h| values.contains(h)),
                    "NotIn" => have.is_none_or(|h| !values.contains(h)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }
}

/// The `policy` references of an automation in `ns` selecting with `selector`, among
/// `policies` (ImagePolicy summaries).
pub fn policy_refs<'a>(
    ns: &str,
    selector: &Selector,
    policies: impl Iterator<Item = &'a ObjectSummary>,
) -> Vec<Ref> {
    policies
        .filter(|p| p.kind == "ImagePolicy" && p.namespace == ns && selector.matches(&p.labels))
        .map(|p| Ref {
            id: p.id.clone(),
            rel: Rel::Policy,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Asserts the references of `obj` (in namespace `own`).
    fn check(kind: FluxKind, obj: Value, want: &[(&str, Rel)]) {
        let got: Vec<(String, Rel)> = refs_of(kind, &obj, "own")
            .into_iter()
            .map(|r| (r.id, r.rel))
            .collect();
        let want: Vec<(String, Rel)> = want
            .iter()
            .map(|(id, rel)| (id.to_string(), *rel))
            .collect();
        assert_eq!(got, want, "{kind:?} {obj}");
    }

    #[test]
    fn references_per_kind() {
        use FluxKind as K;
        let cases = [
            (
                K::Kustomization,
                json!({"spec": {"sourceRef": {"kind": "GitRepository", "name": "fleet"},
                    "dependsOn": [{"name": "infra"}, {"name": "crds", "namespace": "base"}]}}),
                vec![
                    ("GitRepository/own/fleet", Rel::Source),
                    ("Kustomization/own/infra", Rel::DependsOn),
                    ("Kustomization/base/crds", Rel::DependsOn),
                ],
            ),
            (
                K::HelmRelease,
                json!({"spec": {"chart": {"spec": {"chart": "podinfo", "sourceRef":
                    {"kind": "HelmRepository", "name": "charts", "namespace": "src"}}},
                    "dependsOn": [{"name": "db"}]}}),
                vec![
                    ("HelmRepository/src/charts", Rel::Chart),
                    ("HelmRelease/own/db", Rel::DependsOn),
                ],
            ),
            (
                K::HelmRelease,
                json!({"spec": {"chartRef": {"kind": "OCIRepository", "name": "podinfo"}}}),
                vec![("OCIRepository/own/podinfo", Rel::Chart)],
            ),
            (
                K::HelmChart,
                json!({"spec": {"sourceRef": {"kind": "GitRepository", "name": "g"}}}),
                vec![("GitRepository/own/g", Rel::Source)],
            ),
            (
                K::ArtifactGenerator,
                json!({"spec": {"sources": [
                    {"alias": "a", "kind": "GitRepository", "name": "g"},
                    {"alias": "b", "kind": "OCIRepository", "name": "o", "namespace": "x"}]}}),
                vec![
                    ("GitRepository/own/g", Rel::Source),
                    ("OCIRepository/x/o", Rel::Source),
                ],
            ),
            (
                K::ExternalArtifact,
                json!({"spec": {"sourceRef": {"kind": "ArtifactGenerator", "name": "gen",
                    "apiVersion": "source.extensions.fluxcd.io/v1beta1"}}}),
                vec![("ArtifactGenerator/own/gen", Rel::GeneratedBy)],
            ),
            // Wildcard and label-selected event sources name no single object.
            (
                K::Alert,
                json!({"spec": {"providerRef": {"name": "slack"}, "eventSources": [
                    {"kind": "Kustomization", "name": "*"},
                    {"kind": "GitRepository", "name": "fleet", "namespace": "flux"},
                    {"kind": "HelmRelease", "name": "*", "matchLabels": {"a": "b"}}]}}),
                vec![
                    ("Provider/own/slack", Rel::Provider),
                    ("GitRepository/flux/fleet", Rel::Watches),
                ],
            ),
            (
                K::Receiver,
                json!({"spec": {"resources": [{"kind": "GitRepository", "name": "fleet"},
                    {"kind": "OCIRepository", "name": "app-*"}]}}),
                vec![("GitRepository/own/fleet", Rel::Watches)],
            ),
            (
                K::ImagePolicy,
                json!({"spec": {"imageRepositoryRef": {"name": "app"}}}),
                vec![("ImageRepository/own/app", Rel::ImageRepository)],
            ),
            (
                K::ImageUpdateAutomation,
                json!({"metadata": {"labels": {
                    "kustomize.toolkit.fluxcd.io/name": "apps",
                    "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}},
                    "spec": {"sourceRef": {"kind": "GitRepository", "name": "fleet"}}}),
                vec![
                    ("GitRepository/own/fleet", Rel::Source),
                    ("Kustomization/flux-system/apps", Rel::AppliedBy),
                ],
            ),
            (
                K::GitRepository,
                json!({"metadata": {"labels": {"helm.toolkit.fluxcd.io/name": "r",
                    "helm.toolkit.fluxcd.io/namespace": "n"}}}),
                vec![("HelmRelease/n/r", Rel::AppliedBy)],
            ),
            (K::Provider, json!({"spec": {"type": "slack"}}), vec![]),
        ];
        for (kind, obj, want) in cases {
            check(kind, obj, &want);
        }
    }

    #[test]
    fn policy_selector_matches_like_kubernetes() {
        let pol = |name: &str, labels: &[(&str, &str)]| {
            let mut s = crate::fixture::summary_of("ImagePolicy", "own", name);
            s.labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            s
        };
        let policies = [
            pol("a", &[("app", "web")]),
            pol("b", &[("app", "api"), ("tier", "x")]),
            pol("c", &[]),
        ];
        let select = |sel: Value| -> Vec<String> {
            let s = Selector::policy_selector(&json!({"spec": {"policySelector": sel}}));
            policy_refs("own", &s, policies.iter())
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(select(Value::Null).len(), 3, "no selector: every policy");
        assert_eq!(
            select(json!({"matchLabels": {"app": "web"}})),
            ["ImagePolicy/own/a"]
        );
        assert_eq!(
            select(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api"]}]})
            ),
            ["ImagePolicy/own/b"]
        );
        assert_eq!(
            select(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})),
            ["ImagePolicy/own/c"]
        );
        assert_eq!(
            select(
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]})
            )
            .len(),
            2
        );
        assert!(policy_refs("other", &Selector::default(), policies.iter()).is_empty());
    }
}
