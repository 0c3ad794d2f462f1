//! `digestReflectionPolicy`: whether and when the digest of the chosen tag is looked up
//! (one `HEAD` of its manifest with the ImageRepository's credentials).
//! `Never`: no digest; `IfNotPresent`: looked up when the tag changed or no digest is
//! known; `Always`: looked up on every reconcile (every `interval`).

use plumb_api::consts::reason;
use plumb_api::image_reflector::{ImageRef, ReflectionPolicy};
use plumb_api::{ImagePolicy, ImageRepository};
use plumb_source::{ErrorKind, oci};

use crate::context::Context;
use crate::image_tags::canonical_image_name;
use crate::outcome::{Class, Failure};

/// The digest to report for `tag`.
pub(super) async fn reflect(
    obj: &ImagePolicy,
    ctx: &Context,
    repo: &ImageRepository,
    tag: &str,
    previous: Option<&ImageRef>,
) -> Result<Option<String>, Failure> {
    let known = previous
        .filter(|p| p.tag == tag && p.name == repo.spec.image)
        .and_then(|p| p.digest.clone());
    match obj.spec.digest_reflection_policy {
        ReflectionPolicy::Never => Ok(None),
        ReflectionPolicy::IfNotPresent if known.is_some() => Ok(known),
        ReflectionPolicy::IfNotPresent | ReflectionPolicy::Always => {
            head(ctx, repo, tag).await.map(Some)
        }
    }
}

async fn head(ctx: &Context, repo: &ImageRepository, tag: &str) -> Result<String, Failure> {
    let failed = |class, why, m: String| Failure::new(class, why, m);
    let canonical = canonical_image_name(&repo.spec.image)
        .map_err(|m| failed(Class::Stalled, reason::DEPENDENCY_NOT_READY, m))?;
    let reference = oci::parse_url(&format!("oci://{canonical}"))
        .map_err(|e| failed(Class::Stalled, reason::DEPENDENCY_NOT_READY, e.to_string()))?;
    let tag_owned = tag.to_owned();
    crate::image_tags::on_registry(ctx, repo, &reference, move |c| c.head_manifest(&tag_owned))
        .await?
        .map_err(|e| {
            let class = match e.kind() {
                ErrorKind::AuthFailed | ErrorKind::HostUntrusted => Class::Stalled,
                _ => Class::Transient,
            };
            Failure::new(
                class,
                reason::READ_OPERATION_FAILED,
                format!("digest of tag '{tag}': {e}"),
            )
        })
}
