//! Values: coalescing user values with chart defaults (null deletes a default),
//! globals, dependency conditions/tags/aliases and import-values, as Helm's
//! `chartutil` does.

use std::collections::BTreeMap;

use crate::chart::Chart;
use crate::value::{MapRef, Value};

fn as_map(v: &Value) -> Option<&MapRef> {
    match v {
        Value::Map(m) => Some(m),
        _ => None,
    }
}

/// Deep-merges `src` into `dst` for value files and `--set` (later wins, maps merge).
pub fn merge_values(dst: &Value, src: &Value) {
    let (Some(d), Some(s)) = (as_map(dst), as_map(src)) else {
        return;
    };
    let entries: Vec<(String, Value)> = s
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in entries {
        let existing = d.borrow().get(&k).cloned();
        match (&v, existing) {
            (Value::Map(_), Some(ex @ Value::Map(_))) => merge_values(&ex, &v),
            _ => {
                d.borrow_mut().insert(k, v.deep_copy());
            }
        }
    }
}

/// `coalesceTablesFullKey`: `dst` has priority, `src` fills in.
fn coalesce_tables(dst: &Value, src: &Value, merge: bool) {
    let (Some(d), Some(s)) = (as_map(dst), as_map(src)) else {
        return;
    };
    if std::rc::Rc::ptr_eq(d, s) {
        return;
    }
    let entries: Vec<(String, Value)> = s
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in entries {
        let dv = d.borrow().get(&k).cloned();
        match dv {
            Some(Value::Nil) if !merge => {
                d.borrow_mut().remove(&k);
            }
            None => {
                d.borrow_mut().insert(k, sv.deep_copy());
            }
            Some(dvv @ Value::Map(_)) => {
                if matches!(sv, Value::Map(_)) {
                    coalesce_tables(&dvv, &sv, merge);
                }
            }
            Some(_) => {}
        }
    }
}

/// `coalesceValues`: fills `v` (user values for this chart) from the chart's defaults.
fn coalesce_values(c: &Chart, v: &Value, merge: bool) {
    let Some(vm) = as_map(v) else { return };
    let defaults = c.values.deep_copy();
    let Some(dm) = as_map(&defaults) else { return };
    let entries: Vec<(String, Value)> = dm
        .borrow()
        .iter()
        .map(|(k, x)| (k.clone(), x.clone()))
        .collect();
    for (k, dval) in entries {
        let uv = vm.borrow().get(&k).cloned();
        match uv {
            Some(Value::Nil) if !merge => {
                vm.borrow_mut().remove(&k);
            }
            Some(u @ Value::Map(_)) => {
                if matches!(dval, Value::Map(_)) {
                    let is_sub = c.subcharts.iter().any(|s| s.name == k);
                    coalesce_tables(&u, &dval, merge || is_sub);
                }
            }
            Some(_) => {}
            None => {
                vm.borrow_mut().insert(k, dval);
            }
        }
    }
}

fn coalesce_globals(dest: &Value, src: &Value) {
    let (Some(d), Some(s)) = (as_map(dest), as_map(src)) else {
        return;
    };
    let dg = match d.borrow().get("global") {
        Some(g @ Value::Map(_)) => g.clone(),
        Some(_) => return,
        None => Value::empty_map(),
    };
    let sg = match s.borrow().get("global") {
        Some(g @ Value::Map(_)) => g.clone(),
        Some(_) => return,
        None => Value::empty_map(),
    };
    let (Some(dgm), Some(sgm)) = (as_map(&dg), as_map(&sg)) else {
        return;
    };
    let entries: Vec<(String, Value)> = sgm
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in entries {
        let existing = dgm.borrow().get(&k).cloned();
        if let Value::Map(_) = sv {
            let vv = sv.deep_copy();
            match existing {
                None => {
                    dgm.borrow_mut().insert(k, vv);
                }
                Some(dv @ Value::Map(_)) => {
                    // Parent globals win over the subchart's own.
                    coalesce_tables(&vv, &dv, true);
                    dgm.borrow_mut().insert(k, vv);
                }
                Some(_) => {}
            }
        } else if matches!(existing, Some(Value::Map(_))) {
            // A table is not replaced by a scalar.
        } else {
            dgm.borrow_mut().insert(k, sv);
        }
    }
    d.borrow_mut().insert("global".into(), dg);
}

/// `coalesce`: the chart's values and, recursively, its dependencies'.
pub fn coalesce(c: &Chart, dest: &Value, merge: bool) -> Result<(), String> {
    coalesce_values(c, dest, merge);
    let Some(dm) = as_map(dest) else {
        return Ok(());
    };
    for sub in &c.subcharts {
        let existing = dm.borrow().get(&sub.name).cloned();
        let dv = match existing {
            None | Some(Value::Nil) => {
                let m = Value::empty_map();
                dm.borrow_mut().insert(sub.name.clone(), m.clone());
                m
            }
            Some(m @ Value::Map(_)) => m,
            Some(other) => {
                return Err(format!(
                    "type mismatch on {}: {}",
                    sub.name,
                    crate::fmt::sprint_one(&other)
                ));
            }
        };
        coalesce_globals(&dv, dest);
        coalesce(sub, &dv, merge)?;
    }
    Ok(())
}

/// Looks up a dotted path (`a.b.c`) in a values map.
pub fn path_value(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v.clone();
    for seg in path.split('.') {
        let next = match &cur {
            Value::Map(m) => m.borrow().get(seg).cloned(),
            _ => None,
        };
        cur = next?;
    }
    Some(cur)
}

/// Applies aliases, conditions and tags, dropping disabled subcharts
/// (recursively), as `ProcessDependencies`.
pub fn process_dependencies(c: &mut Chart, user: &Value) -> Result<(), String> {
    enable(c, user, "")?;
    import_values(c)?;
    Ok(())
}

fn enable(c: &mut Chart, top_vals: &Value, path: &str) -> Result<(), String> {
    // Resolve aliases: each dependency entry selects a compatible subchart;
    // subcharts no entry selects stay as they are.
    let compatible = |d: &crate::chart::Dependency, s: &Chart| {
        s.name == d.name
            && crate::semver::constraint_matches(&d.version, &s.version).unwrap_or(false)
    };
    let mut chosen: Vec<Chart> = Vec::new();
    for s in &c.subcharts {
        if !c.dependencies.iter().any(|d| compatible(d, s)) {
            chosen.push(s.clone());
        }
    }
    for d in &mut c.dependencies {
        let found = c.subcharts.iter().find(|s| compatible(d, s));
        if let Some(s) = found {
            let mut s = s.clone();
            if !d.alias.is_empty() {
                s.name = d.alias.clone();
                if let Value::Map(m) = &s.meta {
                    let m2 = m.borrow().clone();
                    let nm = Value::map(m2);
                    if let Value::Map(nmm) = &nm {
                        nmm.borrow_mut()
                            .insert("name".into(), Value::str(d.alias.as_str()));
                    }
                    s.meta = nm;
                }
            }
            chosen.push(s);
        }
        if !d.alias.is_empty() {
            d.name = d.alias.clone();
        }
    }
    c.subcharts = chosen;
    // Coalesced values to evaluate conditions against.
    let cvals = top_vals.deep_copy();
    if path.is_empty() {
        coalesce(c, &cvals, false)?;
    }
    let tags = path_value(&cvals, "tags");
    let mut disabled: Vec<String> = Vec::new();
    for d in &c.dependencies {
        let mut enabled = true;
        if let Some(Value::Map(t)) = &tags {
            let (mut has_true, mut has_false) = (false, false);
            for tag in &d.tags {
                match t.borrow().get(tag) {
                    Some(Value::Bool(true)) => has_true = true,
                    Some(Value::Bool(false)) => has_false = true,
                    _ => {}
                }
            }
            if !has_true && has_false {
                enabled = false;
            }
        }
        for cond in d.condition.trim().split(',') {
            let cond = cond.trim();
            if cond.is_empty() {
                continue;
            }
            if let Some(Value::Bool(b)) = path_value(&cvals, &format!("{path}{cond}")) {
                enabled = b;
                break;
            }
        }
        if !enabled {
            disabled.push(d.name.clone());
        }
    }
    c.subcharts.retain(|s| !disabled.contains(&s.name));
    c.dependencies.retain(|d| !disabled.contains(&d.name));
    for s in &mut c.subcharts {
        let sub_path = format!("{path}{}.", s.name);
        enable(s, &cvals, &sub_path)?;
    }
    Ok(())
}

/// `processImportValues`, children first; imported values rank below the parent's.
fn import_values(c: &mut Chart) -> Result<(), String> {
    for s in &mut c.subcharts {
        import_values(s)?;
    }
    if c.dependencies.iter().all(|d| d.import_values.is_empty()) {
        return Ok(());
    }
    let cvals = Value::empty_map();
    coalesce(c, &cvals, true)?;
    let b = Value::empty_map();
    for d in &c.dependencies {
        for iv in &d.import_values {
            let (child, parent) = match iv {
                Value::Map(m) => {
                    let m = m.borrow();
                    let ch = m.get("child").map(crate::funcs::strval).unwrap_or_default();
                    let pa = m
                        .get("parent")
                        .map(crate::funcs::strval)
                        .unwrap_or_default();
                    (ch, pa)
                }
                Value::Str(s) => (format!("exports.{s}"), ".".to_string()),
                _ => continue,
            };
            let Some(table @ Value::Map(_)) = path_value(&cvals, &format!("{}.{child}", d.name))
            else {
                continue;
            };
            let piece = if parent == "." || parent.is_empty() {
                table.deep_copy()
            } else {
                let mut v = table.deep_copy();
                for seg in parent.split('.').rev() {
                    let mut m = BTreeMap::new();
                    m.insert(seg.to_string(), v);
                    v = Value::map(m);
                }
                v
            };
            merge_values(&b, &piece);
        }
    }
    // Parent values win over imported ones.
    let merged = cvals.deep_copy();
    coalesce_tables_merge(&merged, &b);
    c.values = merged;
    Ok(())
}

fn coalesce_tables_merge(dst: &Value, src: &Value) {
    coalesce_tables(dst, src, true);
}
