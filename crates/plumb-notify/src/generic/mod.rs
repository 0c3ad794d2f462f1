//! Provider types of this family (see the crate overview): `generic` and `generic-hmac`
//! (`forward.rs`: the event as JSON), and `slack` (`slack.rs`: Slack's attachments, webhook
//! or bot token).

mod forward;
mod slack;

pub use forward::{hmac_signature, webhook_url};

use crate::Notifier;

/// The notifier of `provider_type` if it belongs to this family.
pub fn notifier(provider_type: &str) -> Option<&'static dyn Notifier> {
    match provider_type {
        "generic" => Some(&forward::Forward { hmac: false }),
        "generic-hmac" => Some(&forward::Forward { hmac: true }),
        "slack" => Some(&slack::Slack),
        _ => None,
    }
}
