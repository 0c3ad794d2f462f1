//! Incident and observability provider types: `alertmanager`, `grafana`, `opsgenie`,
//! `pagerduty`, `datadog`. Each maps an event onto the service's alert, annotation or event
//! as Flux's notification-controller does (labels, tags, severity, dedup key); the text
//! helpers and address checks are shared with the chat types.

mod alertmanager;
mod datadog;
mod grafana;
mod opsgenie;
mod pagerduty;

use crate::Notifier;

/// The notifier of `provider_type` if it belongs to this family.
pub fn notifier(provider_type: &str) -> Option<&'static dyn Notifier> {
    match provider_type {
        "alertmanager" => Some(&alertmanager::ALERTMANAGER),
        "grafana" => Some(&grafana::GRAFANA),
        "opsgenie" => Some(&opsgenie::OPSGENIE),
        "pagerduty" => Some(&pagerduty::PAGERDUTY),
        "datadog" => Some(&datadog::DATADOG),
        _ => None,
    }
}
