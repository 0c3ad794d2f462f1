//! CEL expressions as Flux evaluates them (`fluxcd/pkg/runtime/cel`), on the `cel` crate:
//! Kustomization `healthCheckExprs` ([`health`]), `dependsOn[].readyExpr` (variables `self`
//! and `dep`) and Receiver `resourceFilter` (variables `res` and `req`).
//!
//! An expression is compiled once ([`Expression::compile`]); a bad one is a clear error
//! naming it, which callers report as Flux does (`InvalidCELExpression`, Stalled). Budgets
//! bound every evaluation: the source length, the parser's nesting depth (the `cel` crate's
//! 96), and the nesting of comprehensions (`all`, `exists`, `filter`, `map`: at most
//! [`MAX_COMPREHENSION_DEPTH`], so the work is at most quadratic in the size of the object,
//! itself capped by [`MAX_INPUT_BYTES`]). Evaluation never panics the process: a panic in
//! the interpreter is caught and becomes an error. Only the variables an expression names
//! are converted from JSON, so an expression over `status` never copies `managedFields`.

pub mod health;

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;

/// Longest expression source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024;
/// Deepest nesting of comprehensions (`all`/`exists`/`filter`/`map`) accepted.
pub const MAX_COMPREHENSION_DEPTH: usize = 2;
/// Deepest nesting of brackets (`(`, `[`, `{`) accepted before parsing: the parser
/// recurses on them, and a thread's stack must survive it.
pub const MAX_BRACKET_DEPTH: usize = 32;
/// Deepest expression tree accepted (each level is a frame of the evaluator).
pub const MAX_TREE_DEPTH: usize = 64;
/// Stack of the thread that parses an expression.
const COMPILE_STACK_BYTES: usize = 256 << 20;
/// Flux's prefix for a configuration error that retrying will not fix.
pub const TERMINAL_ERROR: &str = "Reconciliation failed terminally due to configuration error";
/// Compiled expressions kept by [`Expression::cached`].
pub const CACHE_ENTRIES: usize = 4096;
/// Largest input object (its JSON text) an expression is evaluated against.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why an expression could not be compiled or evaluated. Messages quote the expression
/// (user configuration, never secret data) but never the object it was evaluated against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    /// The expression does not parse or exceeds a budget.
    #[error("failed to parse the CEL expression '{expr}': {message}")]
    Parse {
        /// The expression.
        expr: String,
        /// What is wrong with it.
        message: String,
    },
    /// The expression names a variable that is not declared where it is used.
    #[error(
        "failed to parse the CEL expression '{expr}': undeclared reference to '{name}' (declared: {declared})"
    )]
    Undeclared {
        /// The expression.
        expr: String,
        /// The undeclared variable.
        name: String,
        /// The declared variables.
        declared: String,
    },
    /// Evaluation failed (a missing field, a type mismatch, a budget).
    #[error("failed to evaluate the CEL expression '{expr}': {message}")]
    Eval {
        /// The expression.
        expr: String,
        /// The interpreter's error.
        message: String,
    },
    /// The expression evaluated to something other than a boolean.
    #[error("failed to evaluate CEL expression as boolean: '{expr}' returned {got}")]
    NotBoolean {
        /// The expression.
        expr: String,
        /// The CEL type it returned.
        got: String,
    },
}

/// The environment every expression compiles and runs in: the standard library, optional
/// values, and the `strings` and `encoders` extensions (Flux adds `ext.Strings`,
/// `ext.Encoders` and `ext.Sets`; the `cel` crate has no sets extension).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Both extensions are declared once on a fresh environment; a failure would only mean
    // a name clash inside the crate, and then the functions are simply missing.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::encoders);
    Arc::new(env)
});

/// A compiled CEL expression.
#[derive(Debug)]
pub struct Expression {
    source: String,
    program: Program,
    /// Free variables (identifiers not bound by a comprehension), sorted.
    free: Vec<String>,
}

impl Expression {
    /// Compiles `source`. With `declared` set, every free variable must be one of them (as
    /// Flux's `WithCompile()` + `WithStructVariables(...)`); with `None`, any name is
    /// allowed and resolves at evaluation (Flux's health expressions, whose variables are
    /// the object's top-level fields).
    pub fn compile(source: &str, declared: Option<&[&str]>) -> Result<Self, CelError> {
        // The parser recurses once per operator of a chain (`a + a + ...`): parse on a
        // thread of its own with a stack big enough for the source budget, then refuse
        // trees deeper than the evaluator may recurse on a worker's stack.
        let owned = source.to_string();
        let declared: Option<Vec<String>> =
            declared.map(|d| d.iter().map(|s| s.to_string()).collect());
        std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn(move || {
                let d: Option<Vec<&str>> = declared
                    .as_ref()
                    .map(|d| d.iter().map(String::as_str).collect());
                Self::compile_here(&owned, d.as_deref())
            })
            .map_err(|e| CelError::Parse {
                expr: source.to_string(),
                message: format!("starting the parser thread: {e}"),
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(CelError::Parse {
                    expr: source.to_string(),
                    message: "the parser panicked".into(),
                })
            })
    }

    fn compile_here(source: &str, declared: Option<&[&str]>) -> Result<Self, CelError> {
        let parse_err = |message: String| CelError::Parse {
            expr: source.to_string(),
            message,
        };
        if source.trim().is_empty() {
            return Err(parse_err("empty expression".into()));
        }
        if source.len() > MAX_SOURCE_BYTES {
            return Err(parse_err(format!(
                "{} bytes, over the budget of {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        let nesting = bracket_depth(source);
        if nesting > MAX_BRACKET_DEPTH {
            return Err(parse_err(format!(
                "brackets nested {nesting} deep, over the budget of {MAX_BRACKET_DEPTH}"
            )));
        }
        let program = catch_unwind(AssertUnwindSafe(|| ENV.compile(source)))
            .map_err(|_| parse_err("the parser panicked".into()))?
            .map_err(|e| parse_err(e.to_string().trim().to_string()))?;
        let mut walk = Walk::default();
        walk.expr(program.expression(), &mut Vec::new(), 0);
        if walk.max_depth > MAX_COMPREHENSION_DEPTH {
            return Err(parse_err(format!(
                "comprehensions nested {} deep, over the budget of {MAX_COMPREHENSION_DEPTH}",
                walk.max_depth
            )));
        }
        if walk.max_tree_depth > MAX_TREE_DEPTH {
            return Err(parse_err(format!(
                "expression tree {} deep, over the budget of {MAX_TREE_DEPTH}",
                walk.max_tree_depth
            )));
        }
        if let Some(declared) = declared
            && let Some(name) = walk.free.iter().find(|n| !declared.contains(&n.as_str()))
        {
            return Err(CelError::Undeclared {
                expr: source.to_string(),
                name: name.clone(),
                declared: declared.join(", "),
            });
        }
        Ok(Expression {
            source: source.to_string(),
            program,
            free: walk.free.into_iter().collect(),
        })
    }

    /// [`Expression::compile`] through a process-wide cache keyed by the source and the
    /// declared variables, so each expression compiles once, not once per reconcile. The
    /// cache forgets everything past [`CACHE_ENTRIES`] (expressions change rarely).
    pub fn cached(source: &str, declared: Option<&[&str]>) -> Result<Arc<Self>, CelError> {
        static CACHE: LazyLock<Mutex<HashMap<String, Arc<Expression>>>> =
            LazyLock::new(Default::default);
        let key = format!(
            "{}\n{source}",
            declared.map(|d| d.join(",")).unwrap_or_default()
        );
        if let Some(e) = CACHE.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(e);
        }
        let compiled = Arc::new(Self::compile(source, declared)?);
        if let Ok(mut c) = CACHE.lock() {
            if c.len() >= CACHE_ENTRIES {
                c.clear();
            }
            c.insert(key, Arc::clone(&compiled));
        }
        Ok(compiled)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a boolean with the named variables bound to JSON values (only those the
    /// expression uses are converted).
    pub fn eval_bool(&self, vars: &[(&str, &Value)]) -> Result<bool, CelError> {
        let used = vars.iter().filter(|(n, _)| self.uses(n)).copied();
        let bindings = Bindings::new(used).map_err(|m| self.eval_err(m))?;
        self.eval_with(&bindings)
    }

    /// Evaluates to a boolean with the top-level fields of `object` as variables (Flux's
    /// health expressions: `status.conditions...`, `metadata.generation`).
    pub fn eval_bool_fields(&self, object: &Value) -> Result<bool, CelError> {
        let bindings =
            Bindings::fields(object, self.free_variables()).map_err(|m| self.eval_err(m))?;
        self.eval_with(&bindings)
    }

    /// Evaluates to a boolean against variables converted once (see [`Bindings`]).
    pub fn eval_with(&self, bindings: &Bindings) -> Result<bool, CelError> {
        self.run(&bindings.ctx)
    }

    /// Evaluates to any value, returned as JSON (Receiver OIDC `variables`).
    pub fn eval_value(&self, vars: &[(&str, &Value)]) -> Result<Value, CelError> {
        let used = vars.iter().filter(|(n, _)| self.uses(n)).copied();
        let bindings = Bindings::new(used).map_err(|m| self.eval_err(m))?;
        let result = catch_unwind(AssertUnwindSafe(|| self.program.execute(&bindings.ctx)))
            .map_err(|_| self.eval_err("the interpreter panicked".into()))?
            .map_err(|e| self.eval_err(e.to_string()))?;
        result.json().map_err(|e| self.eval_err(e.to_string()))
    }

    /// The free variables the expression reads.
    pub fn free_variables(&self) -> impl Iterator<Item = &str> {
        self.free.iter().map(String::as_str)
    }

    fn uses(&self, name: &str) -> bool {
        self.free.iter().any(|f| f == name)
    }

    fn eval_err(&self, message: String) -> CelError {
        CelError::Eval {
            expr: self.source.clone(),
            message,
        }
    }

    fn run(&self, ctx: &Context<'_, '_>) -> Result<bool, CelError> {
        let result = catch_unwind(AssertUnwindSafe(|| self.program.execute(ctx)))
            .map_err(|_| self.eval_err("the interpreter panicked".into()))?
            .map_err(|e| self.eval_err(e.to_string()))?;
        match result {
            CelValue::Bool(b) => Ok(b),
            other => Err(CelError::NotBoolean {
                expr: self.source.clone(),
                got: type_name(&other).into(),
            }),
        }
    }
}

/// Variables converted from JSON once, for several expressions over the same input (the
/// three health expressions of one object).
pub struct Bindings {
    ctx: Context<'static, 'static>,
}

impl Bindings {
    /// Binds each `(name, value)`; fails when the inputs exceed [`MAX_INPUT_BYTES`].
    pub fn new<'a>(vars: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Result<Self, String> {
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        let mut budget = MAX_INPUT_BYTES;
        for (name, value) in vars {
            // The API server caps objects near 1.5 MiB; this bounds what a comprehension
            // walks when the input is something else (a webhook body, say).
            budget = charge(value, budget).ok_or_else(|| {
                format!("input '{name}' over the budget of {MAX_INPUT_BYTES} bytes")
            })?;
            let v = cel::to_value(value).map_err(|e| format!("converting '{name}': {e}"))?;
            ctx.add_variable_from_value(name, v);
        }
        Ok(Bindings { ctx })
    }

    /// Binds the top-level fields `names` of `object` (those it has).
    pub fn fields<'a>(
        object: &'a Value,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        Self::new(
            names
                .into_iter()
                .filter_map(|n| object.get(n).map(|v| (n, v))),
        )
    }
}

/// `budget` less the approximate JSON size of `v` (strings, keys, 8 bytes a scalar), or
/// `None` when it does not fit. serde_json's own depth limit (128) bounds the recursion.
fn charge(v: &Value, budget: usize) -> Option<usize> {
    match v {
        Value::String(s) => budget.checked_sub(s.len() + 2),
        Value::Array(a) => a
            .iter()
            .try_fold(budget.checked_sub(2)?, |b, x| charge(x, b)),
        Value::Object(o) => o.iter().try_fold(budget.checked_sub(2)?, |b, (k, x)| {
            charge(x, b.checked_sub(k.len() + 3)?)
        }),
        _ => budget.checked_sub(8),
    }
}

/// The deepest nesting of brackets in `source` (counting those in string literals too,
/// which only makes the budget stricter).
fn bracket_depth(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in source.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn type_name(v: &CelValue) -> &'static str {
    match v {
        CelValue::List(_) => "list",
        CelValue::Map(_) => "map",
        CelValue::Int(_) => "int",
        CelValue::UInt(_) => "uint",
        CelValue::Float(_) => "double",
        CelValue::String(_) => "string",
        CelValue::Bytes(_) => "bytes",
        CelValue::Null => "null",
        CelValue::Bool(_) => "bool",
        _ => "a non-boolean value",
    }
}

/// The free variables and the comprehension nesting depth of an expression.
#[derive(Default)]
struct Walk {
    free: BTreeSet<String>,
    max_depth: usize,
    max_tree_depth: usize,
    tree_depth: usize,
}

impl Walk {
    fn expr(&mut self, e: &IdedExpr, bound: &mut Vec<String>, depth: usize) {
        self.tree_depth += 1;
        self.max_tree_depth = self.max_tree_depth.max(self.tree_depth);
        self.node(e, bound, depth);
        self.tree_depth -= 1;
    }

    fn node(&mut self, e: &IdedExpr, bound: &mut Vec<String>, depth: usize) {
        match &e.expr {
            Expr::Ident(name) => {
                if !bound.iter().any(|b| b == name) {
                    self.free.insert(name.clone());
                }
            }
            Expr::Select(s) => self.expr(&s.operand, bound, depth),
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.expr(t, bound, depth);
                }
                for a in &c.args {
                    self.expr(a, bound, depth);
                }
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.expr(x, bound, depth)),
            Expr::Map(m) => self.entries(&m.entries, bound, depth),
            Expr::Struct(s) => self.entries(&s.entries, bound, depth),
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range, bound, depth);
                self.expr(&c.accu_init, bound, depth);
                let inner = depth + 1;
                self.max_depth = self.max_depth.max(inner);
                let before = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.iter().cloned());
                bound.push(c.accu_var.clone());
                for x in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.expr(x, bound, inner);
                }
                bound.truncate(before);
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn entries(
        &mut self,
        entries: &[cel::common::ast::IdedEntryExpr],
        bound: &mut Vec<String>,
        depth: usize,
    ) {
        for en in entries {
            match &en.expr {
                EntryExpr::StructField(f) => self.expr(&f.value, bound, depth),
                EntryExpr::MapEntry(m) => {
                    self.expr(&m.key, bound, depth);
                    self.expr(&m.value, bound, depth);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
