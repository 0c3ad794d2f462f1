//! The ImageRepository a policy refers to, with Flux's cross-namespace rule: a repository in
//! another namespace must list the policy's namespace in `spec.accessFrom` (by namespace
//! labels; an empty `matchLabels` selects every namespace). With `--no-cross-namespace-refs`
//! every reference to another namespace is denied before the repository is read.

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use plumb_api::consts::reason;
use plumb_api::{ImagePolicy, ImageRepository};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The referenced repository, or a `DependencyNotReady` / `AccessDenied` failure.
pub(super) async fn get(obj: &ImagePolicy, ctx: &Context) -> Result<ImageRepository, Failure> {
    let own_ns = obj.namespace().unwrap_or_default();
    let r = &obj.spec.image_repository_ref;
    let ns = r.namespace.clone().unwrap_or_else(|| own_ns.clone());
    if ctx.config.no_cross_namespace_refs && ns != own_ns {
        return Err(Failure::new(
            Class::Stalled,
            reason::ACCESS_DENIED,
            format!(
                "cannot access 'ImageRepository/{ns}/{}', cross-namespace references have been blocked",
                r.name
            ),
        ));
    }
    let api: Api<ImageRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let api_err = |e: kube::Error| {
        Failure::new(
            Class::Transient,
            reason::DEPENDENCY_NOT_READY,
            format!("get ImageRepository '{ns}/{}': {e}", r.name),
        )
    };
    let repo = api
        .get_opt(&r.name)
        .await
        .map_err(api_err)?
        .ok_or_else(|| {
            Failure::new(
                Class::Waiting,
                reason::DEPENDENCY_NOT_READY,
                format!(
                    "referenced ImageRepository '{ns}/{}' does not exist",
                    r.name
                ),
            )
        })?;
    if ns != own_ns {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let labels = namespaces
            .get_opt(&own_ns)
            .await
            .map_err(api_err)?
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        let allowed = repo.spec.access_from.as_ref().is_some_and(|a| {
            a.namespace_selectors
                .iter()
                .any(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        if !allowed {
            return Err(Failure::new(
                Class::Stalled,
                reason::ACCESS_DENIED,
                format!(
                    "access denied to ImageRepository '{ns}/{}': its spec.accessFrom does not select namespace '{own_ns}'",
                    r.name
                ),
            ));
        }
    }
    Ok(repo)
}
