//! The ImageUpdateAutomation reconciler (image.toolkit.fluxcd.io/v1): check out the source
//! GitRepository, run the Setters over `update.path` with the selected ImagePolicies, commit
//! with the templated message and push.

pub mod message;
