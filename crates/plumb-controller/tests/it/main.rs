//! plumb-controller's integration tests against the real API server, as one test binary:
//! each module was its own binary, and linking nine copies of the controller cost CI
//! minutes and gigabytes of disk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod artifact_generator;
mod cel;
mod common;
mod e2e;
mod ecr;
pub(crate) mod external_artifact;
mod faults;
mod fleet;
mod git_verify;
mod gitrepository;
mod helm_lookup;
mod helmchart;
mod helmrelease;
mod helmrelease_actions;
mod helmrelease_metadata;
mod helmrelease_operations;
mod helmrelease_strategies;
mod helmrepository;
mod image_access;
mod image_e2e;
mod image_policy;
mod image_update;
mod kustomization;
mod kustomization_parity;
mod kustomization_unchanged;
mod kustomization_unchanged_inputs;
mod leader;
mod logsink;
mod notification_routing;
mod notification_types;
mod notifications;
mod oci_bad_input;
mod oci_verify;
mod ocirepository;
mod operations;
mod rbac;
mod receiver;
mod receiver_types;
mod remote;
mod sops;
mod sops_irsa;
mod ui;
mod ui_browser;
