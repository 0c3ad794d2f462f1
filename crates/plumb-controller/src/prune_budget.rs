//! The prune budget shared by Kustomizations and HelmReleases: one pass may not delete more
//! than a configured share of what the object held (a bad commit that empties a directory,
//! a values change that disables most of a chart) unless the object opts out.

use std::collections::BTreeMap;

/// Annotation on a Kustomization or HelmRelease that lets one pass prune more than the
/// budget allows (value `disabled`).
pub const PRUNE_BUDGET_ANNOTATION: &str = "plumb.dev/prune-budget";

/// Inventories smaller than this are never refused (deleting 2 of 3 objects is routine).
const MIN_GUARDED: usize = 4;

/// Refuses (with the message for the condition) to delete `stale` of `held` objects when
/// that share is over `budget` (0..1) and `annotations` do not disable the budget.
pub fn check(
    annotations: &BTreeMap<String, String>,
    stale: usize,
    held: usize,
    budget: f64,
) -> Result<(), String> {
    let disabled = annotations.get(PRUNE_BUDGET_ANNOTATION).map(String::as_str) == Some("disabled");
    let share = stale as f64 / held.max(1) as f64;
    if disabled || held < MIN_GUARDED || share <= budget {
        return Ok(());
    }
    Err(format!(
        "refusing to prune {stale} of {held} objects ({:.0}% > budget {:.0}%); set annotation {PRUNE_BUDGET_ANNOTATION}: disabled to allow it",
        share * 100.0,
        budget * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_budget_unless_disabled() {
        let none = BTreeMap::new();
        assert!(check(&none, 3, 10, 0.5).is_ok());
        assert!(
            check(&none, 3, 3, 0.5).is_ok(),
            "small inventories are not guarded"
        );
        let err = check(&none, 6, 10, 0.5).unwrap_err();
        assert!(
            err.contains("refusing to prune 6 of 10 objects (60% > budget 50%)"),
            "{err}"
        );
        let off = BTreeMap::from([(PRUNE_BUDGET_ANNOTATION.to_string(), "disabled".to_string())]);
        assert!(check(&off, 10, 10, 0.5).is_ok());
    }
}
