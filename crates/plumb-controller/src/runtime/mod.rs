//! What the reconcilers run on: the Kubernetes client stack with client-side rate limits and
//! request counting ([`client`]), the shared state of every reconciler ([`context`]), leader
//! election on a Lease ([`leader`]), Prometheus metrics ([`metrics`]), clients of remote
//! clusters for `spec.kubeConfig` ([`remote`]), registry credentials from ECR
//! (`provider: aws`, [`ecr`]) and the shutdown signal ([`signal`]).

pub mod client;
pub mod context;
pub mod ecr;
pub mod leader;
pub mod metrics;
pub mod remote;
pub mod signal;
