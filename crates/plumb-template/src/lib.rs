//! Go's `text/template` language with Sprig v3, in Rust, with no Helm in it.
//!
//! - [`parse`]: lexer and parser (Go's grammar: trim markers, comments,
//!   pipelines with declarations, `if/else if/with/else with/range/break/
//!   continue/define/template/block`).
//! - [`exec`]: the executor (Go's semantics for pipelines, variables, ranges
//!   over ints, maps in key order, short-circuit `and`/`or`, `<no value>`),
//!   with a [`exec::Host`] that embedders use to add functions that re-enter
//!   the engine (Helm's `include` and `tpl`).
//! - [`value`]: the dynamic value model shaped after the Go types templates
//!   see (`float64` vs `int`, maps shared by reference as Sprig's `set` needs).
//! - [`funcs`]: Go's builtins and Sprig v3 (strings, lists, dicts, math,
//!   regex, crypto, dates), [`fmt`]: Go's `fmt` verbs and float forms,
//!   [`json`]: Go's `encoding/json`.
//!
//! Embedders (plumb-helm) add their functions through a [`exec::Host`] and
//! their own function table; [`render_str`] runs a template with the
//! standard set alone, which is what tests and the fuzz target use.
//!
//! ## Bad input
//! Parse nesting is bounded ([`parse::MAX_NESTING`]), template call depth
//! ([`exec::MAX_DEPTH`]) and output size ([`exec::MAX_OUTPUT`]) too.

pub mod budget;
mod dates;
pub mod error;
pub mod exec;
pub mod fmt;
pub mod funcs;
pub mod json;
pub mod parse;
pub mod value;

use std::rc::Rc;

pub use error::TemplateError;
pub use value::{Object, Value};

/// The standard host: Go's builtins and Sprig, nothing that re-enters the engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdHost;

impl exec::Host for StdHost {
    fn call(
        &self,
        _ex: &mut exec::Exec<'_>,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, String> {
        match funcs::table().get(name) {
            Some(f) => f(&args),
            None => Err(format!("function {name:?} not defined")),
        }
    }
    fn has(&self, name: &str) -> bool {
        funcs::is_std_func(name)
    }
}

/// Parses `src` as a template named `name` with the standard function set and
/// executes it with `data`, within [`budget::Limits::process_default`] (or the
/// budget already armed on this thread).
pub fn render_str(name: &str, src: &str, data: Value) -> Result<String, TemplateError> {
    let _budget = budget::Limits::process_default().install();
    let mut set = exec::TemplateSet::default();
    set.add(name, src, &funcs::is_std_func)
        .map_err(|msg| TemplateError::Parse { msg })?;
    let mut ex = exec::Exec::new(Rc::new(set), &StdHost);
    let mut out = String::new();
    ex.execute(name, data, &mut out)
        .map_err(|msg| TemplateError::Exec { msg })?;
    Ok(out)
}
