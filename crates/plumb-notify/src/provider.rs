//! A Provider's settings as the controller resolves them, and the notifier of each type.

use std::collections::BTreeMap;

use crate::{Event, NotifyError, Transport};

/// A Provider's settings after the controller read its spec and Secret (Flux's precedence:
/// the Secret's `address`, `proxy`, `token`, `username`, `password`, `headers` override the
/// spec). Holds secrets: never log it.
#[derive(Clone, Default)]
pub struct Settings {
    /// `spec.type`.
    pub provider_type: String,
    /// The Provider's `namespace/name`, for messages.
    pub provider: String,
    /// `spec.address` or the Secret's `address`.
    pub address: String,
    /// `spec.channel`.
    pub channel: String,
    /// `spec.username` or the Secret's `username`.
    pub username: String,
    /// The Secret's `password`.
    pub password: String,
    /// The Secret's `token`.
    pub token: String,
    /// The Secret's `headers` (a YAML map), sent with every request of the generic types.
    pub headers: BTreeMap<String, String>,
    /// Other Secret keys a type reads (e.g. `githubAppID`, `privateKey` for GitHub Apps).
    pub extra: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("provider_type", &self.provider_type)
            .field("provider", &self.provider)
            .field("address", &crate::transport::redact_url(&self.address))
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// One event to deliver through one Provider.
#[derive(Clone, Debug)]
pub struct Delivery<'a> {
    /// The Provider's settings.
    pub settings: &'a Settings,
    /// The event, with the Alert's `eventMetadata` and `summary` merged into its metadata.
    pub event: &'a Event,
    /// The commit status key (Flux's default id, or the Provider's `commitStatusExpr`
    /// evaluated by the controller); set for commit-status types only.
    pub commit_status_key: Option<String>,
}

/// What a Provider type does with an event.
pub trait Notifier: Send + Sync {
    /// Checks the settings once, when the Provider is reconciled (Flux validates address,
    /// token and the like before marking a Provider Ready).
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError>;

    /// Sends the event: builds the requests the service documents and sends them.
    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError>;
}

/// The notifier of a Provider `spec.type`, or `None` for a type plumb does not serve.
pub fn notifier_for(provider_type: &str) -> Option<&'static dyn Notifier> {
    crate::generic::notifier(provider_type)
        .or_else(|| crate::chat::notifier(provider_type))
        .or_else(|| crate::incident::notifier(provider_type))
        .or_else(|| crate::commit_status::notifier(provider_type))
}
