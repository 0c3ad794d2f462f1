//! What ImageRepository scans leave for ImagePolicies: the tag database of each repository
//! (one sorted `Vec<String>` in memory, [`plumb_image::TagDb`]) in a context memo, and the
//! canonical image name both kinds report.
//!
//! The database lives in memory only: after a restart every ImageRepository scans once
//! (the watch lists them all), and its status change wakes its policies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kube::ResourceExt;
use plumb_api::ImageRepository;
use plumb_api::consts::reason;
use plumb_image::TagDb;
use plumb_source::{SourceError, oci};

use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::registry::RegistryAccess;

/// The tag databases by `(namespace, name)` of the ImageRepository.
#[derive(Default)]
pub(crate) struct ImageTags(Mutex<HashMap<(String, String), Arc<TagDb>>>);

impl ImageTags {
    /// The tags of the last successful scan of `ns/name`.
    pub(crate) fn get(&self, ns: &str, name: &str) -> Option<Arc<TagDb>> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(ns.to_owned(), name.to_owned())).cloned()
    }

    /// Replaces the tags of `ns/name`.
    pub(crate) fn put(&self, ns: &str, name: &str, db: TagDb) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert((ns.to_owned(), name.to_owned()), Arc::new(db));
    }

    /// Forgets a deleted repository.
    pub(crate) fn remove(&self, ns: &str, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&(ns.to_owned(), name.to_owned()));
    }
}

/// The registry access fields of `repo` (in namespace `ns`), for its scans and for the
/// digest lookups of its policies.
pub(crate) fn registry_access<'a>(repo: &'a ImageRepository, ns: &'a str) -> RegistryAccess<'a> {
    RegistryAccess {
        namespace: ns,
        insecure: repo.spec.insecure,
        timeout: repo.timeout().unwrap_or(std::time::Duration::from_secs(60)),
        secret_ref: repo.spec.secret_ref.as_ref(),
        service_account_name: repo.spec.service_account_name.as_deref(),
        cert_secret_ref: repo.spec.cert_secret_ref.as_ref(),
        proxy_secret_ref: repo.spec.proxy_secret_ref.as_ref(),
        provider: repo.spec.provider.as_str(),
    }
}

/// Runs `op` (blocking) on a registry client for `canonical` with `repo`'s credentials; a
/// refused cached ECR token is refreshed once. The outer error is a failure to build the
/// options (Secrets, ECR), the inner one the registry's answer.
pub(crate) async fn on_registry<T, F>(
    ctx: &Context,
    repo: &ImageRepository,
    reference: &oci::Reference,
    op: F,
) -> Result<Result<T, SourceError>, Failure>
where
    T: Send + 'static,
    F: Fn(&oci::Client) -> Result<T, SourceError> + Clone + Send + 'static,
{
    let ns = repo.namespace().unwrap_or_default();
    let access = registry_access(repo, &ns);
    let (opts, ecr) = crate::registry::client_options(ctx, &access, reference).await?;
    let run = |opts: oci::ClientOptions| {
        let (reference, op) = (reference.clone(), op.clone());
        async move {
            let client = match oci::Client::new(&reference, &opts) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            tokio::task::spawn_blocking(move || op(&client))
                .await
                .map_err(|e| {
                    Failure::new(
                        Class::Transient,
                        reason::READ_OPERATION_FAILED,
                        e.to_string(),
                    )
                })
        }
    };
    crate::ecr::with_ecr_retry(ctx, ecr, opts, run).await
}

/// The image name as go-containerregistry canonicalizes it (Flux's `canonicalImageName`):
/// Docker Hub names get `index.docker.io/` and, without an organization, `library/`; a
/// first component with a `.` or `:`, or `localhost`, is a registry host. Tags and digests
/// are refused (`spec.image` names a repository).
pub(crate) fn canonical_image_name(image: &str) -> Result<String, String> {
    let image = image.trim();
    if image.is_empty() || image.contains('@') || image.contains("://") {
        return Err(format!(
            "invalid image name '{image}': want <registry>/<repository>"
        ));
    }
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        return Err(format!(
            "invalid image name '{image}': tags are not allowed"
        ));
    }
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    let name = if (first == "docker.io" || first == "index.docker.io") && !rest.contains('/') {
        format!("index.docker.io/library/{rest}")
    } else if first == "docker.io" || first == "index.docker.io" {
        format!("index.docker.io/{rest}")
    } else if is_host {
        image.to_owned()
    } else if first.is_empty() {
        format!("index.docker.io/library/{rest}")
    } else {
        format!("index.docker.io/{image}")
    };
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b));
    if !valid || name.ends_with('/') || name.contains("//") {
        return Err(format!("invalid image name '{image}'"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_as_go_containerregistry() {
        let c = |s: &str| canonical_image_name(s).unwrap();
        assert_eq!(c("nginx"), "index.docker.io/library/nginx");
        assert_eq!(c("fluxcd/flux"), "index.docker.io/fluxcd/flux");
        assert_eq!(c("docker.io/fluxcd/flux"), "index.docker.io/fluxcd/flux");
        assert_eq!(c("docker.io/nginx"), "index.docker.io/library/nginx");
        assert_eq!(c("ghcr.io/org/app"), "ghcr.io/org/app");
        assert_eq!(c("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(c("localhost/app"), "localhost/app");
        for bad in [
            "",
            "nginx:1.0",
            "ghcr.io/app@sha256:ab",
            "oci://x/y",
            "a b",
            "x//y",
        ] {
            assert!(canonical_image_name(bad).is_err(), "{bad}");
        }
    }
}
