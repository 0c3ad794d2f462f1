//! Kustomization `spec.healthCheckExprs` (Flux RFC-0009, `fluxcd/pkg/runtime/cel`'s
//! `StatusEvaluator`): the health of objects of one group and kind judged by CEL
//! expressions over the object's top-level fields instead of kstatus.
//!
//! Flux's rules: entries match by group and kind (the version of `apiVersion` is not
//! compared), the first entry for a group/kind wins; an object whose
//! `status.observedGeneration` differs from `metadata.generation` is InProgress without
//! evaluating anything; then `inProgress`, `failed` and `current` are evaluated in that
//! order (the optional ones only when set) and the first that is true decides; none true is
//! InProgress. An evaluation error (a field the object does not have yet, a non-boolean
//! result) is Flux's Unknown: not healthy, not failed, so the check fails when the timeout
//! runs out (RFC-0009: "the health check will fail"), with the error naming the expression.

use std::sync::Arc;

use plumb_api::kustomize::CustomHealthCheck;
use plumb_ssa::kstatus::{Health, Status};
use serde_json::Value;

use super::{Bindings, CelError, Expression};

/// The compiled expressions of one `healthCheckExprs` entry.
#[derive(Debug)]
pub struct StatusEvaluator {
    group: String,
    kind: String,
    in_progress: Option<Arc<Expression>>,
    failed: Option<Arc<Expression>>,
    current: Arc<Expression>,
}

/// A compile error with the entry it came from, in Flux's words.
fn entry_err(i: usize, which: &str, e: CelError) -> String {
    format!(
        "failed to create custom status reader for healthchecks[{i}]: failed to parse the expression {which}: {e}"
    )
}

fn optional(
    src: Option<&String>,
    i: usize,
    which: &str,
) -> Result<Option<Arc<Expression>>, String> {
    src.filter(|s| !s.is_empty())
        .map(|s| Expression::cached(s, None).map_err(|e| entry_err(i, which, e)))
        .transpose()
}

impl StatusEvaluator {
    /// Compiles every entry; the first bad expression is the error (a terminal
    /// configuration error: `InvalidCELExpression`).
    pub fn compile_all(checks: &[CustomHealthCheck]) -> Result<Vec<StatusEvaluator>, String> {
        let mut out: Vec<StatusEvaluator> = Vec::with_capacity(checks.len());
        for (i, c) in checks.iter().enumerate() {
            if c.current.is_empty() {
                return Err(format!(
                    "failed to create custom status reader for healthchecks[{i}]: expression Current not specified"
                ));
            }
            let current =
                Expression::cached(&c.current, None).map_err(|e| entry_err(i, "Current", e))?;
            let in_progress = optional(c.in_progress.as_ref(), i, "InProgress")?;
            let failed = optional(c.failed.as_ref(), i, "Failed")?;
            let (group, _) = plumb_ssa::split_api_version(&c.api_version);
            if out.iter().any(|e| e.group == group && e.kind == c.kind) {
                continue; // Flux: the first entry for a group/kind is used.
            }
            out.push(StatusEvaluator {
                group: group.to_string(),
                kind: c.kind.clone(),
                in_progress,
                failed,
                current,
            });
        }
        Ok(out)
    }

    fn exprs(&self) -> impl Iterator<Item = &Expression> {
        [
            self.in_progress.as_deref(),
            self.failed.as_deref(),
            Some(&*self.current),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether this evaluator judges objects of `group`/`kind`.
    pub fn supports(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }

    /// The health of `object` (JSON as the API server returned it).
    pub fn evaluate(&self, object: &Value) -> Health {
        let observed = object.pointer("/status/observedGeneration");
        let generation = object.pointer("/metadata/generation");
        if let (Some(o), Some(g)) = (observed.and_then(Value::as_i64), generation)
            && g.as_i64() != Some(o)
        {
            return health(
                Status::InProgress,
                "status.observedGeneration is not current",
            );
        }
        // Every expression reads the same object: convert the fields they use once.
        let mut names: Vec<&str> = self.exprs().flat_map(|e| e.free_variables()).collect();
        names.sort_unstable();
        names.dedup();
        let bindings = match Bindings::fields(object, names) {
            Ok(b) => b,
            Err(m) => {
                let e = CelError::Eval {
                    expr: self.current.source().to_string(),
                    message: m,
                };
                return health(Status::InProgress, e.to_string());
            }
        };
        let steps = [
            (
                self.in_progress.as_deref(),
                Status::InProgress,
                "inProgress",
            ),
            (self.failed.as_deref(), Status::Failed, "failed"),
            (Some(&self.current), Status::Current, "current"),
        ];
        for (expr, status, name) in steps {
            let Some(expr) = expr else { continue };
            match expr.eval_with(&bindings) {
                Ok(true) => {
                    let why = if status == Status::Current {
                        String::new()
                    } else {
                        format!("healthCheckExprs {name} expression is true")
                    };
                    return health(status, why);
                }
                Ok(false) => {}
                Err(e) => return health(Status::InProgress, e.to_string()),
            }
        }
        health(
            Status::InProgress,
            "healthCheckExprs current expression is false",
        )
    }
}

fn health(status: Status, message: impl Into<String>) -> Health {
    Health {
        status,
        message: message.into(),
    }
}

/// The evaluator for `group`/`kind` among `evaluators`.
pub fn find<'a>(
    evaluators: &'a [StatusEvaluator],
    group: &str,
    kind: &str,
) -> Option<&'a StatusEvaluator> {
    evaluators.iter().find(|e| e.supports(group, kind))
}
