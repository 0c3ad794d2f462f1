//! Synthetic fleets of any size: for the first-render benchmark and for working on the page
//! without a cluster (`cargo run -p plumb-ui --example ui_fixture`).

use crate::model::{ObjectSummary, Ref, Rel, State};

fn summary(kind: &str, api_version: &str, ns: &str, name: &str, state: State) -> ObjectSummary {
    ObjectSummary {
        id: ObjectSummary::id_of(kind, ns, name),
        kind: kind.into(),
        api_version: api_version.into(),
        namespace: ns.into(),
        name: name.into(),
        state,
        reason: match state {
            State::Failed => "BuildFailed".into(),
            State::Stalled => "InvalidPath".into(),
            State::Ready => "ReconciliationSucceeded".into(),
            _ => String::new(),
        },
        message: match state {
            State::Failed => "kustomize build failed: missing resource".into(),
            State::Ready => "Applied revision: main@sha1:4e1243bd".into(),
            _ => String::new(),
        },
        revision: "main@sha1:4e1243bd22c66e76c2ba9eddc1f91394e57f9f83".into(),
        labels: [("team".to_string(), format!("team-{}", name.len() % 3))].into(),
        last_transition: Some("2026-12-01T10:00:00Z".into()),
        refs: vec![],
    }
}

/// A bare summary of `kind` (a Flux kind name) in state `unknown`, for tests.
pub fn summary_of(kind: &str, ns: &str, name: &str) -> ObjectSummary {
    let api_version = plumb_api::kinds::FluxKind::from_kind(kind)
        .map(|k| k.resource().api_version)
        .unwrap_or_default();
    summary(kind, &api_version, ns, name, State::Unknown)
}

/// A fleet of `n` objects over 10 namespaces: one GitRepository per 20 objects, the rest
/// Kustomizations (with `dependsOn` chains) and HelmReleases (on HelmRepositories); about one
/// in 50 failed, one in 100 stalled, one in 100 suspended, the rest ready.
pub fn synthetic_fleet(n: usize) -> Vec<ObjectSummary> {
    let mut out = Vec::with_capacity(n);
    let mut sources: Vec<String> = Vec::new();
    for i in 0..n {
        let ns = format!("team-{}", i % 10);
        let state = match i % 100 {
            7 | 57 => State::Failed,
            33 => State::Stalled,
            71 => State::Suspended,
            _ => State::Ready,
        };
        let mut o = if i % 20 == 0 {
            let o = summary(
                "GitRepository",
                "source.toolkit.fluxcd.io/v1",
                &ns,
                &format!("repo-{i}"),
                State::Ready,
            );
            sources.push(o.id.clone());
            o
        } else if i % 20 == 1 {
            let o = summary(
                "HelmRepository",
                "source.toolkit.fluxcd.io/v1",
                &ns,
                &format!("charts-{i}"),
                State::Ready,
            );
            sources.push(o.id.clone());
            o
        } else if i % 3 == 0 {
            let mut o = summary(
                "HelmRelease",
                "helm.toolkit.fluxcd.io/v2",
                &ns,
                &format!("release-{i}"),
                state,
            );
            if let Some(src) = sources
                .iter()
                .rev()
                .find(|s| s.starts_with("HelmRepository"))
            {
                o.refs.push(Ref {
                    id: src.clone(),
                    rel: Rel::Chart,
                });
            }
            o
        } else {
            let mut o = summary(
                "Kustomization",
                "kustomize.toolkit.fluxcd.io/v1",
                &ns,
                &format!("app-{i}"),
                state,
            );
            if let Some(src) = sources
                .iter()
                .rev()
                .find(|s| s.starts_with("GitRepository"))
            {
                o.refs.push(Ref {
                    id: src.clone(),
                    rel: Rel::Source,
                });
            }
            if i % 4 == 0 {
                o.refs.push(Ref {
                    id: ObjectSummary::id_of("Kustomization", &ns, &format!("app-{}", i - 1)),
                    rel: Rel::DependsOn,
                });
            }
            o
        };
        o.last_transition = Some(format!("2026-12-01T{:02}:{:02}:00Z", (i / 60) % 24, i % 60));
        out.push(o);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// A [`Store`](crate::Store) holding [`synthetic_fleet`]`(n)`: for the browser tests and the
/// first-render benchmark.
pub fn synthetic_store(n: usize) -> crate::Store {
    let store = crate::Store::new();
    for o in synthetic_fleet(n) {
        store.upsert(o);
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_size_asked_and_unique_ids() {
        let f = synthetic_fleet(2000);
        assert_eq!(f.len(), 2000);
        let ids: std::collections::BTreeSet<_> = f.iter().map(|o| &o.id).collect();
        assert_eq!(ids.len(), 2000);
        assert!(f.iter().any(|o| o.state == State::Failed));
        assert!(
            f.iter()
                .any(|o| o.refs.iter().any(|r| r.rel == Rel::DependsOn))
        );
    }
}
