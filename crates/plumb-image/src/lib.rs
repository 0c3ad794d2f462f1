//! Image automation without a cluster: image policy evaluation (which tag is the latest) and
//! Flux's `Setters` update strategy (rewriting the YAML scalars marked with
//! `# {"$imagepolicy": "ns:name"}`). No kube, no tokio, no git: the controller feeds it
//! policies and a work tree.

pub mod setters;
