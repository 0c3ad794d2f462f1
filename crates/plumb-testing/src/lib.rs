//! Test harness: a real local Kubernetes control plane, git fixtures and builders (dev only).

pub mod moto;
