//! Tests of the `plumb` binary and its deploy files, as one test binary (one link of the
//! whole workspace instead of seven).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod artifact_cli;
mod chart;
mod crash_cli;
mod crds;
mod crds_cli;
mod eks_cli;
mod hr_cli;
mod ks_cli;
mod leader_cli;
mod notify_cli;
mod ops_cli;
mod shard_cli;
mod ui_cli;
