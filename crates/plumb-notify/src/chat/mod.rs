//! Chat provider types: `msteams`, `discord`, `googlechat`, `rocket`, `matrix`, `webex`,
//! `telegram`, `lark`, `zulip` (`slack` lives with the generic types). Each builds the message Flux's
//! notification-controller builds: the object as `kind/name.namespace`, the event message,
//! the metadata (revision, summary, the Alert's `eventMetadata`), coloured or marked by
//! severity, and cut to the service's documented size limit.

mod discord;
mod format;
mod googlechat;
#[cfg(test)]
mod http_test;
mod lark;
mod matrix;
mod msteams;
mod rocket;
mod slack_compat;
mod telegram;
#[cfg(test)]
pub(crate) mod testutil;
mod webex;
mod zulip;

pub(crate) use format::{
    Typed, check_url, check_url_and_credentials, check_url_and_token, object_name, require,
    scheme_host, truncate_chars, with_credentials,
};

use crate::Notifier;

/// The notifier of `provider_type` if it belongs to this family.
pub fn notifier(provider_type: &str) -> Option<&'static dyn Notifier> {
    match provider_type {
        "msteams" => Some(&msteams::MSTEAMS),
        "discord" => Some(&discord::DISCORD),
        "googlechat" => Some(&googlechat::GOOGLECHAT),
        "rocket" => Some(&rocket::ROCKET),
        "matrix" => Some(&matrix::MATRIX),
        "webex" => Some(&webex::WEBEX),
        "telegram" => Some(&telegram::TELEGRAM),
        "lark" => Some(&lark::LARK),
        "zulip" => Some(&zulip::ZULIP),
        _ => None,
    }
}
