//! Operations CLI on Flux-compatible objects, like `flux get|reconcile|suspend|resume|tree|events`:
//! works through KUBECONFIG or the in-cluster config against plumb or Flux controllers alike.
//! One module per verb group: [`get`], [`reconcile`] (also suspend and resume), [`tree`],
//! [`events`], [`version`]; `common` holds the kinds, targets and helpers they share.
//!
//! Objects are handled as JSON (`DynamicObject`) so one code path serves every kind; the
//! kinds and their status fields are Flux's GA API.

mod common;
mod events;
mod get;
mod reconcile;
mod tree;
mod version;

pub use events::{EventsArgs, events};
pub use get::{GetArgs, get};
pub use reconcile::{ReconcileArgs, SuspendArgs, reconcile, resume, suspend};
pub use tree::{TreeArgs, tree};
pub use version::version;
