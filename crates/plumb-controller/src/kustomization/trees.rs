//! Extracted source artifacts, shared by every Kustomization that reads them. An artifact is
//! content-addressed (URL plus digest, verified on extraction), so the tree of one digest is
//! the same for every reader: a monorepo revision read by 500 Kustomizations is extracted
//! once, not 500 times, for the checks of the skip ([`super::unchanged`]) and for renders
//! alike. Builds only read the tree (kustomize's generated files and SOPS decryption stay in
//! memory).
//!
//! A few trees are kept (the latest ones asked for); a tree dropped from the list lives on
//! until its last reader is done. An artifact without a digest gets a private extraction.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::context::Context;
use crate::outcome::Failure;

/// Extracted artifacts kept (a few sources updating at once).
const KEPT: usize = 8;

/// An artifact extracted once for every reader of its digest.
type Cell = Arc<OnceCell<Arc<tempfile::TempDir>>>;

/// The memo of kept trees, latest last.
#[derive(Default)]
pub(super) struct Trees {
    cells: Mutex<Vec<(String, Cell)>>,
}

/// The extracted tree of `artifact`: shared when it has a digest (extracted by the first
/// reader, the others wait for it), else a private extraction. A failed extraction is not
/// kept: the next reader tries again.
pub(super) async fn shared(
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
    timeout: Duration,
) -> Result<Arc<tempfile::TempDir>, Failure> {
    let Some(digest) = artifact.digest.as_deref().filter(|d| !d.is_empty()) else {
        return crate::artifact::fetch_artifact(ctx, artifact, "plumb-ks-", timeout)
            .await
            .map(Arc::new);
    };
    let id = format!("{}#{digest}", artifact.url);
    let cell = ctx.memo::<Trees>().cell(id);
    cell.get_or_try_init(|| async {
        crate::artifact::fetch_artifact(ctx, artifact, "plumb-ks-tree-", timeout)
            .await
            .map(Arc::new)
    })
    .await
    .cloned()
}

impl Trees {
    /// The cell of `id`, made (and the oldest dropped past [`KEPT`]) when new; moved to the
    /// end when asked for again, so trees in use stay.
    fn cell(&self, id: String) -> Cell {
        let Ok(mut cells) = self.cells.lock() else {
            return Arc::new(OnceCell::new());
        };
        let found = cells.iter().position(|(k, _)| *k == id);
        let c = match found {
            Some(i) => cells.remove(i).1,
            None => Arc::new(OnceCell::new()),
        };
        cells.push((id, c.clone()));
        if cells.len() > KEPT {
            cells.remove(0);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cells_are_shared_per_digest_and_the_oldest_dropped() {
        let trees = Trees::default();
        let a = trees.cell("a".into());
        assert!(
            Arc::ptr_eq(&a, &trees.cell("a".into())),
            "same id, same cell"
        );
        for i in 0..KEPT {
            let _ = trees.cell(format!("b{i}"));
        }
        assert!(
            !Arc::ptr_eq(&a, &trees.cell("a".into())),
            "dropped after {KEPT} newer ones"
        );
        assert_eq!(trees.cells.lock().unwrap().len(), KEPT);
    }
}
