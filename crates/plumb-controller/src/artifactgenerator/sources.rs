//! The sources of a generator: validation of the spec, each source's current artifact
//! (GitRepository, OCIRepository, ExternalArtifact), the digest of them all, and the
//! cycle check for generators reading other generators' outputs.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::artifact_generator::{GeneratorSourceKind, SourceReference};
use plumb_api::consts::reason;
use plumb_api::meta::Artifact;
use plumb_api::{ArtifactGenerator, ExternalArtifact, GitRepository, OCIRepository};
use sha2::{Digest as _, Sha256};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Generators followed at most when looking for a cycle.
const MAX_CHAIN: usize = 32;

fn invalid(msg: String) -> Failure {
    Failure::new(Class::Stalled, reason::VALIDATION_FAILED, msg)
}

/// The alias of an `@alias` reference.
fn alias_ref(s: &str) -> &str {
    s.strip_prefix('@').unwrap_or(s)
}

/// Checks what the API server cannot: unique aliases and artifact names, known aliases,
/// served source kinds.
pub(super) fn validate(obj: &ArtifactGenerator) -> Result<(), Failure> {
    let mut aliases = BTreeSet::new();
    for s in &obj.spec.sources {
        if !aliases.insert(s.alias.as_str()) {
            return Err(invalid(format!("duplicate source alias '{}'", s.alias)));
        }
        if matches!(
            s.kind,
            GeneratorSourceKind::Bucket | GeneratorSourceKind::HelmChart
        ) {
            return Err(invalid(format!(
                "source '{}' of kind {} is not supported by plumb",
                s.alias, s.kind
            )));
        }
    }
    let mut names = BTreeSet::new();
    for a in &obj.spec.artifacts {
        if !names.insert(a.name.as_str()) {
            return Err(invalid(format!("duplicate artifact name '{}'", a.name)));
        }
        let refs = a.copy.iter().filter_map(|c| {
            c.from
                .strip_prefix('@')
                .and_then(|r| r.split_once('/'))
                .map(|(alias, _)| alias)
        });
        let refs = refs
            .chain(a.revision.as_deref().map(alias_ref))
            .chain(a.origin_revision.as_deref().map(alias_ref));
        for r in refs {
            if !aliases.contains(r) {
                return Err(invalid(format!(
                    "artifact '{}' refers to unknown source alias '{r}'",
                    a.name
                )));
            }
        }
    }
    Ok(())
}

/// The current artifact of every source, by alias; a missing source or one without an
/// artifact is a `SourceFetchFailed` retried soon.
pub(super) async fn artifacts(
    obj: &ArtifactGenerator,
    ctx: &Context,
) -> Result<BTreeMap<String, Artifact>, Failure> {
    check_cycle(obj, ctx).await?;
    let own = obj.namespace().unwrap_or_default();
    let mut out = BTreeMap::new();
    for s in &obj.spec.sources {
        let ns =
            crate::artifact::source_namespace(ctx, &own, s.namespace.as_deref(), &s.kind, &s.name)?;
        let artifact = artifact_of(ctx, s, &ns).await?;
        out.insert(s.alias.clone(), artifact);
    }
    Ok(out)
}

async fn artifact_of(ctx: &Context, s: &SourceReference, ns: &str) -> Result<Artifact, Failure> {
    let name = s.name.as_str();
    let get_err = |e: kube::Error| {
        Failure::new(
            Class::Transient,
            reason::SOURCE_FETCH_FAILED,
            format!("getting {} '{ns}/{name}': {e}", s.kind),
        )
    };
    let (found, artifact) = match s.kind {
        GeneratorSourceKind::GitRepository => {
            let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), ns);
            let o = api.get_opt(name).await.map_err(get_err)?;
            (
                o.is_some(),
                o.and_then(|o| o.status).and_then(|s| s.artifact),
            )
        }
        GeneratorSourceKind::OCIRepository => {
            let api: Api<OCIRepository> = Api::namespaced(ctx.client.clone(), ns);
            let o = api.get_opt(name).await.map_err(get_err)?;
            (
                o.is_some(),
                o.and_then(|o| o.status).and_then(|s| s.artifact),
            )
        }
        GeneratorSourceKind::ExternalArtifact => {
            let api: Api<ExternalArtifact> = Api::namespaced(ctx.client.clone(), ns);
            let o = api.get_opt(name).await.map_err(get_err)?;
            (
                o.is_some(),
                o.and_then(|o| o.status).and_then(|s| s.artifact),
            )
        }
        GeneratorSourceKind::Bucket | GeneratorSourceKind::HelmChart => (false, None),
    };
    let what = if found {
        "is not ready, artifact not found"
    } else {
        "not found"
    };
    artifact.ok_or_else(|| {
        Failure::new(
            Class::Transient,
            reason::SOURCE_FETCH_FAILED,
            format!("source '{}' ({}/{ns}/{name}) {what}", s.alias, s.kind),
        )
    })
}

/// Refuses a generator that reads, through ExternalArtifacts, its own outputs: directly
/// (a source naming one of its artifacts) or through other generators.
async fn check_cycle(obj: &ArtifactGenerator, ctx: &Context) -> Result<(), Failure> {
    let me = (obj.namespace().unwrap_or_default(), obj.name_any());
    let mine: BTreeSet<(String, String)> = obj
        .spec
        .artifacts
        .iter()
        .map(|a| (me.0.clone(), a.name.clone()))
        .collect();
    let mut todo = vec![(obj.spec.sources.clone(), me.0.clone(), vec![me.1.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((sources, ns, path)) = todo.pop() {
        if seen.len() > MAX_CHAIN {
            return Err(invalid("generator chain is too deep".into()));
        }
        for s in sources
            .iter()
            .filter(|s| s.kind == GeneratorSourceKind::ExternalArtifact)
        {
            let src_ns = s.namespace.clone().unwrap_or_else(|| ns.clone());
            if mine.contains(&(src_ns.clone(), s.name.clone())) {
                return Err(invalid(format!(
                    "generator cycle: {} -> ExternalArtifact '{src_ns}/{}'",
                    path.join(" -> "),
                    s.name
                )));
            }
            let api: Api<ExternalArtifact> = Api::namespaced(ctx.client.clone(), &src_ns);
            let Ok(Some(ea)) = api.get_opt(&s.name).await else {
                continue;
            };
            let Some(owner) = ea.spec.source_ref.filter(|r| r.kind == "ArtifactGenerator") else {
                continue;
            };
            let owner_ns = owner.namespace.unwrap_or_else(|| src_ns.clone());
            if !seen.insert((owner_ns.clone(), owner.name.clone())) {
                continue;
            }
            let mut path = path.clone();
            path.push(owner.name.clone());
            let gens: Api<ArtifactGenerator> = Api::namespaced(ctx.client.clone(), &owner_ns);
            if let Ok(Some(g)) = gens.get_opt(&owner.name).await {
                todo.push((g.spec.sources, owner_ns, path));
            }
        }
    }
    Ok(())
}

/// `sha256:<hex>` over the generation and every source's identity and artifact.
pub(super) fn digest(obj: &ArtifactGenerator, artifacts: &BTreeMap<String, Artifact>) -> String {
    let mut h = Sha256::new();
    h.update(obj.metadata.generation.unwrap_or_default().to_be_bytes());
    for s in &obj.spec.sources {
        let a = artifacts.get(&s.alias);
        for part in [
            s.alias.as_str(),
            s.kind.as_str(),
            s.namespace.as_deref().unwrap_or(""),
            s.name.as_str(),
            a.map_or("", |a| a.revision.as_str()),
            a.and_then(|a| a.digest.as_deref()).unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}
