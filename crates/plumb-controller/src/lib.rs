//! kube-runtime controllers for plumb's Flux-compatible custom resources.
