//! kustomize's legacy output order: some kinds first, admission webhooks last, the rest by
//! group/version/kind, then by namespace (none sorts last) and name.

use crate::resource::Res;

const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Sorts in legacy order; empty lists mean kustomize's defaults.
pub(crate) fn legacy(resources: &mut Vec<Res>, first: &[String], last: &[String]) {
    // Both defaults apply only when neither list is given.
    let (first, last): (Vec<&str>, Vec<&str>) = if first.is_empty() && last.is_empty() {
        (ORDER_FIRST.to_vec(), ORDER_LAST.to_vec())
    } else {
        (
            first.iter().map(String::as_str).collect(),
            last.iter().map(String::as_str).collect(),
        )
    };
    let rank = |k: &str| -> i64 {
        if let Some(i) = first.iter().position(|x| *x == k) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|x| *x == k) {
            return i as i64 + 1;
        }
        0
    };
    // Keys borrow from the resources; sort indices (ties keep input order), then permute.
    // The group/version/kind part of the key is formatted once per distinct kind.
    let order: Vec<usize> = {
        let ids: Vec<_> = resources.iter().map(Res::id_ref).collect();
        let mut gvk_keys: rustc_hash::FxHashMap<_, (i64, String)> = Default::default();
        for id in &ids {
            gvk_keys
                .entry(id.gvk)
                .or_insert_with(|| (rank(id.gvk.kind), id.gvk.sort_string()));
        }
        let mut keyed: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let ns = if id.namespace.is_empty() {
                    "~X"
                } else {
                    id.namespace
                };
                let (rank, gvk) = gvk_keys
                    .get(&id.gvk)
                    .map(|(r, g)| (*r, g.as_str()))
                    .unwrap_or((0, ""));
                ((rank, gvk, ns, id.name), i)
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, i)| i).collect()
    };
    let mut slots: Vec<Option<Res>> = std::mem::take(resources).into_iter().map(Some).collect();
    resources.extend(order.into_iter().filter_map(|i| slots[i].take()));
}
