//! Go `text/template` from plumb-template: [`parse`] turns source into trees,
//! [`exec`] runs them; [`render_str`] runs one with Helm's function set.

pub use plumb_template::{exec, parse};

use std::rc::Rc;

use crate::engine::HelmHost;
use crate::value::Value;

/// Parses `src` as a template named `name` (with Helm's function set) and
/// executes it with `data`. Returns the output or a Go-style error message.
pub fn render_str(name: &str, src: &str, data: Value) -> Result<String, String> {
    let _budget = plumb_template::budget::Limits::process_default().install();
    let mut set = exec::TemplateSet::default();
    set.add(name, src, &HelmHost::is_func)?;
    let host = HelmHost { lookup: None };
    let mut ex = exec::Exec::new(Rc::new(set), &host);
    let mut out = String::new();
    ex.execute(name, data, &mut out)?;
    Ok(out)
}
