//! The ImagePolicy reconciler: pick the latest tag of an ImageRepository's last scan by the
//! policy and report it as `latestRef` (and the one before as `observedPreviousRef`).
//!
//! Steps ([`Kind::steps`]):
//! 1. **validate**: exactly one policy, a valid range and filter, and `interval` set exactly
//!    when `digestReflectionPolicy: Always` (Flux's CEL rules, checked here because the
//!    CRDs carry no CEL for Kubernetes 1.20); invalid specs stall (`InvalidPolicy`);
//! 2. **repository**: the referenced ImageRepository; another namespace needs its
//!    `accessFrom` to select this namespace (`AccessDenied`); missing or not yet scanned is
//!    `DependencyNotReady` ([`repository`]);
//! 3. **evaluate**: `filterTags` then the policy over the tag database of the last scan
//!    ([`plumb_image::Policy`]);
//! 4. **digest**: per `digestReflectionPolicy`, a `HEAD` of the tag's manifest with the
//!    repository's credentials ([`digest`]);
//! 5. **report**: `latestRef`, `observedPreviousRef` when the image changed, an event.
//!
//! Every scan of the repository changes its status (`scanTime`), which wakes its policies.

mod digest;
mod repository;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use plumb_api::consts::reason;
use plumb_api::image_reflector::{ImageRef, ReflectionPolicy, SortOrder};
use plumb_api::{ImagePolicy, ImagePolicyStatus, ImageRepository};
use plumb_image::{Order, Policy as TagPolicy, PolicyKind, TagFilter};

use crate::context::Context;
use crate::image_tags::ImageTags;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// Reason of a policy that cannot be evaluated as written.
const INVALID_POLICY: &str = "InvalidPolicy";

/// Runs the ImagePolicy controller (and its ImageRepository watch) until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<ImagePolicy>,
    repos: Api<ImageRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let controller = crate::reconciler::desired_state_controller(api, watch.clone());
    let store = controller.store();
    let controller = controller.watches(repos, watch, move |r: ImageRepository| users(&store, &r));
    crate::reconciler::run(controller, ctx, concurrency).await;
}

/// The policies referring to `repo`.
fn users(store: &Store<ImagePolicy>, repo: &ImageRepository) -> Vec<ObjectRef<ImagePolicy>> {
    let (ns, name) = (repo.namespace(), repo.name_any());
    store
        .state()
        .into_iter()
        .filter(|p| {
            let r = &p.spec.image_repository_ref;
            r.name == name && r.namespace.clone().or_else(|| p.namespace()) == ns
        })
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
}

impl Kind for ImagePolicy {
    const KIND: &'static str = "ImagePolicy";
    const POLICY: Policy = Policy::SOURCE;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        // Without `Always` the repository's scans drive the policy; the interval only
        // re-checks the digest.
        let interval = self
            .spec
            .interval
            .as_deref()
            .map(plumb_api::duration::parse);
        match interval {
            Some(Ok(d)) => d,
            _ => Duration::from_secs(600),
        }
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    fn revision(status: &ImagePolicyStatus) -> &str {
        status.latest_ref.as_ref().map_or("", |r| r.tag.as_str())
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut ImagePolicyStatus,
    ) -> std::result::Result<Done, Failure> {
        let policy = compile(obj)?;
        let repo = repository::get(obj, ctx).await?;
        let (repo_ns, repo_name) = (repo.namespace().unwrap_or_default(), repo.name_any());
        let db = ctx
            .memo::<ImageTags>()
            .get(&repo_ns, &repo_name)
            .ok_or_else(|| {
                Failure::new(
                    Class::Waiting,
                    reason::DEPENDENCY_NOT_READY,
                    format!("ImageRepository '{repo_ns}/{repo_name}' has not been scanned yet"),
                )
            })?;
        let tag = policy
            .latest(db.tags())
            .map_err(|e| Failure::new(Class::Stalled, INVALID_POLICY, e.to_string()))?
            .ok_or_else(|| {
                Failure::new(
                    Class::Waiting,
                    reason::DEPENDENCY_NOT_READY,
                    format!(
                        "no tag of ImageRepository '{repo_ns}/{repo_name}' ({} tags) matches the policy",
                        db.len()
                    ),
                )
            })?
            .to_owned();
        let previous = status.latest_ref.clone();
        let digest = digest::reflect(obj, ctx, &repo, &tag, previous.as_ref()).await?;
        let latest = ImageRef {
            name: repo.spec.image.clone(),
            tag,
            digest,
        };
        let changed = previous.as_ref() != Some(&latest);
        let msg = format!(
            "Latest image tag for {} resolved to {}",
            latest.name, latest.tag
        );
        let event = changed.then(|| {
            let note = match &previous {
                Some(p) if p.name == latest.name => format!(
                    "Latest image tag for {} updated from {} to {}",
                    latest.name, p.tag, latest.tag
                ),
                _ => msg.clone(),
            };
            ("Succeeded", note)
        });
        if changed && previous.is_some() {
            status.observed_previous_ref = previous;
        }
        status.latest_ref = Some(latest);
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }
}

/// The compiled policy and filter, with Flux's validation.
fn compile(obj: &ImagePolicy) -> std::result::Result<TagPolicy, Failure> {
    let invalid = |m: String| Failure::new(Class::Stalled, INVALID_POLICY, m);
    let always = obj.spec.digest_reflection_policy == ReflectionPolicy::Always;
    match (&obj.spec.interval, always) {
        (Some(_), false) => {
            return Err(invalid(
                "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'"
                    .into(),
            ));
        }
        (None, true) => {
            return Err(invalid(
                "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'"
                    .into(),
            ));
        }
        _ => {}
    }
    let order = |o: SortOrder| match o {
        SortOrder::Asc => Order::Asc,
        SortOrder::Desc => Order::Desc,
    };
    let p = &obj.spec.policy;
    let kind = match (&p.semver, &p.alphabetical, &p.numerical) {
        (Some(s), None, None) => PolicyKind::SemVer(s.range.clone()),
        (None, Some(a), None) => PolicyKind::Alphabetical(order(a.order)),
        (None, None, Some(n)) => PolicyKind::Numerical(order(n.order)),
        _ => return Err(invalid(plumb_image::Error::NoPolicy.to_string())),
    };
    let filter = match &obj.spec.filter_tags {
        Some(f) => Some(
            TagFilter::new(f.pattern.as_deref().unwrap_or(""), f.extract.as_deref())
                .map_err(|e| invalid(e.to_string()))?,
        ),
        None => None,
    };
    TagPolicy::new(kind, filter).map_err(|e| invalid(e.to_string()))
}
