//! The ImageRepository reconciler: list the tags of `spec.image` in its registry and keep
//! them (minus `exclusionList`) as the repository's tag database for ImagePolicies.
//!
//! Steps ([`Kind::steps`]):
//! 1. **validate**: the canonical image name (Flux's `canonicalImageName`) and the
//!    exclusion patterns; a bad one stalls (`ImageURLInvalid`, `InvalidExclusionList`);
//! 2. **client**: registry options from the same fields and keychain as OCIRepository
//!    ([`crate::registry`]: `secretRef`, `serviceAccountName`, `certSecretRef`,
//!    `proxySecretRef`, `insecure`, `timeout`, `provider: aws` via ECR);
//! 3. **scan**: every tag, following `Link` pagination, at most [`MAX_TAGS`]; a registry
//!    that is down or slow is transient, a refused login stalls (`AuthenticationFailed`);
//!    the last scan result stays in status on failure;
//! 4. **report**: the tag database into the context memo ([`crate::image_tags`]) and
//!    `lastScanResult` (`tagCount`, `revision`, `scanTime`, `latestTags`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use plumb_api::consts::reason;
use plumb_api::image_reflector::ScanResult;
use plumb_api::{ImageRepository, ImageRepositoryStatus};
use plumb_image::{Exclusions, TagDb};
use plumb_source::ErrorKind;
use plumb_source::oci;

use crate::Result;
use crate::context::Context;
use crate::image_tags::{ImageTags, canonical_image_name};
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// The most tags one scan keeps: bounds the memory of a hostile or runaway registry
/// (about 35 MB of tag names at 20 bytes each).
pub const MAX_TAGS: usize = 1_000_000;

/// Flux's reason for an image name that does not parse.
const IMAGE_URL_INVALID: &str = "ImageURLInvalid";
/// Reason for an `exclusionList` pattern that does not compile.
const INVALID_EXCLUSION_LIST: &str = "InvalidExclusionList";

/// Runs the ImageRepository controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<ImageRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let controller = crate::reconciler::desired_state_controller(api, watch);
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for ImageRepository {
    const KIND: &'static str = "ImageRepository";
    const POLICY: Policy = Policy::SOURCE;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(600))
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    fn revision(status: &ImageRepositoryStatus) -> &str {
        status
            .last_scan_result
            .as_ref()
            .and_then(|r| r.revision.as_deref())
            .unwrap_or("")
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut ImageRepositoryStatus,
    ) -> std::result::Result<Done, Failure> {
        let canonical = canonical_image_name(&obj.spec.image)
            .map_err(|m| Failure::new(Class::Stalled, IMAGE_URL_INVALID, m))?;
        let exclusions = Exclusions::new(&obj.spec.exclusion_list)
            .map_err(|e| Failure::new(Class::Stalled, INVALID_EXCLUSION_LIST, e.to_string()))?;
        let tags = scan(obj, ctx, &canonical).await?;
        let db = TagDb::new(tags, &exclusions);
        let count = db.len();
        let previous = status
            .last_scan_result
            .as_ref()
            .and_then(|r| r.revision.clone());
        let result = ScanResult {
            revision: Some(db.revision()),
            tag_count: i64::try_from(count).unwrap_or(i64::MAX),
            scan_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            latest_tags: db.latest_tags(),
        };
        let changed = previous != result.revision;
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        ctx.memo::<ImageTags>().put(&ns, &name, db);
        status.canonical_image_name = Some(canonical.clone());
        status.observed_exclusion_list = obj.spec.exclusion_list.clone();
        status.last_scan_result = Some(result);
        let msg = format!("successful scan: found {count} tags");
        let event = changed.then(|| ("Succeeded", format!("{msg} for '{canonical}'")));
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }

    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        ctx.memo::<ImageTags>().remove(&ns, &name);
        Ok(Action::await_change())
    }
}

/// Lists every tag of `canonical` with `obj`'s credentials (a refused cached ECR token is
/// refreshed once).
async fn scan(
    obj: &ImageRepository,
    ctx: &Context,
    canonical: &str,
) -> std::result::Result<Vec<String>, Failure> {
    let reference = oci::parse_url(&format!("oci://{canonical}"))
        .map_err(|e| Failure::new(Class::Stalled, IMAGE_URL_INVALID, e.to_string()))?;
    crate::image_tags::on_registry(ctx, obj, &reference, |c| c.list_tags_max(MAX_TAGS))
        .await?
        .map_err(|e| classify(&e))
}

/// Flux's reasons for a failed scan.
fn classify(e: &plumb_source::SourceError) -> Failure {
    let (class, why) = match e.kind() {
        ErrorKind::AuthFailed | ErrorKind::HostUntrusted => {
            (Class::Stalled, reason::AUTHENTICATION_FAILED)
        }
        ErrorKind::InvalidInput => (Class::Stalled, IMAGE_URL_INVALID),
        ErrorKind::BadContent => (Class::Stalled, reason::READ_OPERATION_FAILED),
        // A missing repository may be pushed later; the network may come back.
        _ => (Class::Transient, reason::READ_OPERATION_FAILED),
    };
    Failure::new(class, why, e.to_string())
}
