//! Notification providers for plumb: what each of Flux's `Provider` types (notification
//! `v1beta3`) sends for an event, and the transport that sends it.
//!
//! This crate knows no Kubernetes client and no CRD types: the controller turns a Provider and
//! its Secret into [`Settings`], an Alert-matched event into an [`Event`], and calls the
//! provider's [`Notifier`] on a worker of its own (a slow provider never delays a reconcile).
//! A notifier builds the requests the service documents and sends them through a
//! [`Transport`]; tests swap in a recording transport, production uses the HTTP one with the
//! Provider's timeout, proxy and CA.
//!
//! Layout, one module per family of types:
//! - [`generic`]: `generic`, `generic-hmac`, `slack`;
//! - [`chat`]: `msteams`, `discord`, `googlechat`, `rocket`, `matrix`, `webex`,
//!   `telegram`, `lark`, `zulip`;
//! - [`incident`]: `alertmanager`, `grafana`, `opsgenie`, `pagerduty`, `datadog`;
//! - [`commit_status`]: `github`, `gitlab`, `gitea`, `bitbucket`, `bitbucketserver`,
//!   `azuredevops`, and `githubdispatch`.

pub mod chat;
pub mod commit_status;
mod error;
mod event;
pub mod generic;
mod http;
pub mod incident;
mod provider;
mod text;
// Used by the provider families' unit tests.
#[cfg(test)]
#[allow(dead_code)]
pub(crate) mod recorder;
#[cfg(test)]
pub(crate) mod testserver;
mod transport;

pub use error::NotifyError;
pub use event::{Event, InvolvedObject, Severity};
pub use http::{HttpTransport, MAX_RESPONSE_BYTES, ProxyOptions, TransportOptions};
pub use provider::{Delivery, Notifier, Settings, notifier_for};
pub use transport::{HttpRequest, HttpResponse, Method, Transport, redact_url};
