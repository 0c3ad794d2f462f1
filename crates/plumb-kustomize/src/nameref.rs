//! Name-reference fix-up: after prefixes, suffixes, hashes and namespace moves, rewrite every
//! field that refers to a renamed object (kustomize's `nameReference` field specs).

use rustc_hash::FxHashMap as HashMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::fieldspec::{NameBackRef, visit};
use crate::resource::{Gvk, Res};

struct Cand {
    /// Earlier (name, namespace) pairs, oldest first.
    old: Vec<(String, String)>,
    name: String,
    namespace: String,
    cluster: bool,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

fn ns_eq(a: &str, b: &str) -> bool {
    fn d(s: &str) -> &str {
        if s.is_empty() { "default" } else { s }
    }
    d(a) == d(b)
}

/// Rewrites references to renamed objects.
pub(crate) fn fix(resources: &mut [Res], backrefs: &[NameBackRef]) -> Result<()> {
    let gvks: Vec<Gvk> = resources.iter().map(Res::gvk).collect();
    // Distinct kinds, so which field specs apply is decided once per kind and back-reference
    // instead of once per object.
    let mut kind_of: HashMap<&Gvk, usize> = HashMap::default();
    let mut kinds: Vec<&Gvk> = Vec::new();
    let kind_index: Vec<usize> = gvks
        .iter()
        .map(|g| {
            *kind_of.entry(g).or_insert_with(|| {
                kinds.push(g);
                kinds.len() - 1
            })
        })
        .collect();
    // A service-account subject with an empty namespace is invalid input.
    for (r, g) in resources.iter().zip(&gvks) {
        if g.kind != "RoleBinding" && g.kind != "ClusterRoleBinding" {
            continue;
        }
        for s in r
            .obj
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let blank = s
                .get("namespace")
                .is_some_and(|v| v.is_null() || v.as_str() == Some(""));
            if blank && s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
                return Err(Error::build(
                    format!("name reference in {}", r.id()),
                    format!(
                        "Invalid Input: namespace is blank for resource ServiceAccount {:?}",
                        s.get("name")
                            .map(crate::resource::value_string)
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    for br in backrefs {
        let cands: Vec<Cand> = resources
            .iter()
            .zip(&gvks)
            .filter(|(r, g)| {
                // Only renamed or moved objects can be referral targets.
                !r.prev.is_empty()
                    && g.selected_by(&br.referral.group, &br.referral.version, &br.referral.kind)
            })
            .map(|(r, _)| Cand {
                old: r
                    .prev
                    .iter()
                    .map(|id| (id.name.clone(), id.namespace.clone()))
                    .collect(),
                name: r.name().to_string(),
                namespace: r.namespace().to_string(),
                cluster: r.is_cluster_scoped(),
                prefixes: r.prefixes.clone(),
                suffixes: r.suffixes.clone(),
            })
            .collect();
        if cands.is_empty() {
            continue;
        }
        // Earlier names to candidate indices (ascending), so a reference costs one lookup
        // instead of a scan over every candidate.
        let mut by_old: HashMap<&str, Vec<usize>> = HashMap::default();
        for (i, c) in cands.iter().enumerate() {
            for (name, _) in &c.old {
                let v = by_old.entry(name.as_str()).or_default();
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
        let per_kind: Vec<Vec<&crate::fieldspec::FieldSpec>> = kinds
            .iter()
            .map(|g| {
                br.specs
                    .iter()
                    .filter(|s| s.applies_to(g.as_ref()))
                    .collect()
            })
            .collect();
        let fix_one = |((r, gvk), &ki): ((&mut Res, &Gvk), &usize)| -> Result<()> {
            let specs = &per_kind[ki];
            if specs.is_empty() {
                return Ok(());
            }
            // roleRef names a Role or a ClusterRole; only fix the kind it names.
            if let Some(k) = r
                .obj
                .get("roleRef")
                .and_then(|x| x.get("kind"))
                .and_then(Value::as_str)
                && specs.iter().any(|s| s.raw_path.starts_with("roleRef"))
                && k != br.referral.kind
            {
                return Ok(());
            }
            let referrer_ns = r.namespace().to_string();
            let referrer_cluster = r.is_cluster_scoped();
            let referrer_prefixes = r.prefixes.clone();
            let referrer_suffixes = r.suffixes.clone();
            let rid = format!("{} {}", gvk.kind, r.name());
            let referral_kind_is_sa = br.referral.kind == "ServiceAccount";
            let from_map = std::cell::Cell::new(false);
            let select = |old: &str, ns: Option<&str>| -> Result<Option<(String, String)>> {
                // Only renamed (or moved) objects are candidates, matched by an earlier name.
                let mut hits: Vec<&Cand> = by_old
                    .get(old)
                    .into_iter()
                    .flatten()
                    .map(|&i| &cands[i])
                    .filter(|c| {
                        c.old.iter().any(|(name, namespace)| {
                            name == old && ns.is_none_or(|ns| ns_eq(namespace, ns))
                        })
                    })
                    .collect();
                if !referrer_cluster && ns.is_none() {
                    hits.retain(|c| {
                        c.cluster || referral_kind_is_sa || ns_eq(&c.namespace, &referrer_ns)
                    });
                }
                if hits.len() > 1 {
                    // kustomize's two passes: first empty prefixes/suffixes match anything,
                    // then they must match exactly.
                    for allow_empty in [true, false] {
                        if hits.len() > 1 {
                            let kept: Vec<&Cand> = hits
                                .iter()
                                .copied()
                                .filter(|c| {
                                    affix_eq(&c.prefixes, &referrer_prefixes, allow_empty)
                                        && affix_eq(&c.suffixes, &referrer_suffixes, allow_empty)
                                })
                                .collect();
                            hits = kept;
                        }
                    }
                }
                let map_ref = ns.is_some() || from_map.get();
                if hits.len() > 1
                    && !hits.iter().all(|c| {
                        c.name == hits[0].name
                            && (!map_ref || ns_eq(&c.namespace, &hits[0].namespace))
                    })
                {
                    return Err(Error::build(
                        format!("name reference in {rid}"),
                        format!(
                            "found multiple possible referrals for {} {old:?}",
                            br.referral.kind
                        ),
                    ));
                }
                Ok(hits.first().map(|c| (c.name.clone(), c.namespace.clone())))
            };
            let referral_kind = br.referral.kind.clone();
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            let mut result = Ok(());
            for s in specs.iter() {
                let res = visit(&mut obj, &s.path, false, &mut |node| {
                    match node {
                        Value::String(old) => {
                            if let Some((n, _)) = select(old, None)? {
                                *old = n;
                            }
                        }
                        Value::Array(items) => {
                            for it in items.iter_mut() {
                                match it {
                                    Value::String(old) => {
                                        if let Some((n, _)) = select(old, None)? {
                                            *old = n;
                                        }
                                    }
                                    Value::Object(m) => {
                                        from_map.set(true);
                                        let r = fix_map(m, &referral_kind, &select, &rid);
                                        from_map.set(false);
                                        r?
                                    }
                                    _ => {}
                                }
                            }
                        }
                        Value::Object(m) => {
                            from_map.set(true);
                            let r = fix_map(m, &referral_kind, &select, &rid);
                            from_map.set(false);
                            r?
                        }
                        _ => {}
                    }
                    Ok(())
                });
                if res.is_err() {
                    result = res;
                    break;
                }
            }
            r.obj = match obj {
                Value::Object(m) => m,
                _ => Default::default(),
            };
            result
        };
        // Referrers are fixed independently; large sets are split across threads and the
        // first failing object in order reports its error.
        if resources.len() >= 2 * PAR_CHUNK {
            use rayon::prelude::*;
            resources
                .par_iter_mut()
                .zip(gvks.par_iter())
                .zip(kind_index.par_iter())
                .with_min_len(PAR_CHUNK)
                .map(fix_one)
                .find_first(Result::is_err)
                .unwrap_or(Ok(()))?;
        } else {
            resources
                .iter_mut()
                .zip(&gvks)
                .zip(&kind_index)
                .try_for_each(fix_one)?;
        }
    }
    Ok(())
}

/// Objects per parallel task.
const PAR_CHUNK: usize = 128;

type Select<'a> = dyn Fn(&str, Option<&str>) -> Result<Option<(String, String)>> + 'a;

/// A map reference `{name, namespace[, kind]}` (role binding subjects, webhook services).
fn fix_map(
    m: &mut serde_json::Map<String, Value>,
    kind: &str,
    select: &Select<'_>,
    rid: &str,
) -> Result<()> {
    if let Some(k) = m.get("kind").and_then(Value::as_str)
        && k != kind
    {
        return Ok(());
    }
    if m.get("namespace")
        .is_some_and(|v| v.is_null() || v.as_str() == Some(""))
    {
        return Err(Error::build(
            format!("name reference in {rid}"),
            format!(
                "Invalid Input: namespace is blank for resource {kind} {:?}",
                m.get("name")
                    .map(crate::resource::value_string)
                    .unwrap_or_default()
            ),
        ));
    }
    let Some(old) = m.get("name").and_then(Value::as_str).map(String::from) else {
        return Ok(());
    };
    let ns = m.get("namespace").and_then(Value::as_str).map(String::from);
    if let Some((n, newns)) = select(&old, ns.as_deref())? {
        m.insert("name".into(), Value::String(n));
        if !newns.is_empty() {
            m.insert("namespace".into(), Value::String(newns));
        }
    }
    Ok(())
}

/// kustomize's prefix/suffix comparison: the shorter list must be the tail of the longer; an
/// empty list matches only an empty one unless `allow_empty`.
fn affix_eq(a: &[String], b: &[String], allow_empty: bool) -> bool {
    if a.is_empty() || b.is_empty() {
        return allow_empty || a.len() == b.len();
    }
    let n = a.len().min(b.len());
    a[a.len() - n..] == b[b.len() - n..]
}
