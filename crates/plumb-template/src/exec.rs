//! The executor: walks parsed templates against a data value.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::rc::Rc;

use crate::budget;
use crate::fmt as gofmt;
use crate::parse::{self, Arg, Branch, BranchKind, Cmd, List, Node, Pipe};
use crate::value::Value;

/// A named template body and the source it came from (for error positions).
#[derive(Debug)]
pub struct Tree {
    /// Template name (`define` name or file path).
    pub name: Rc<str>,
    /// Name of the source file it was parsed from.
    pub file: Rc<str>,
    /// The source text.
    pub src: Rc<str>,
    /// The body (shared by every template parsed from the same source).
    pub list: Rc<List>,
}

/// The parse of one source text: its main body and its `define`s.
#[derive(Debug)]
struct SharedParse {
    root: Rc<List>,
    defines: Vec<(Rc<str>, Rc<List>)>,
}

/// A set of named templates, as Go's `*template.Template` associations.
#[derive(Debug, Default, Clone)]
pub struct TemplateSet {
    /// Templates by name.
    pub trees: FxHashMap<Rc<str>, Rc<Tree>>,
    /// Parses by source text: charts vendor the same library (Bitnami's
    /// `common`) in several subcharts, and equal sources parse to equal trees.
    /// Ordered, not hashed: comparing stops at the first difference, hashing
    /// reads the whole (possibly megabytes of CRD) source.
    parsed: BTreeMap<Rc<str>, Rc<SharedParse>>,
}

/// A template source parsed before its [`TemplateSet`] exists: charts parse
/// their templates while `values.yaml` is read on another thread.
#[derive(Debug, Clone)]
pub struct PreParsed {
    src: Rc<str>,
    shared: Rc<SharedParse>,
}

impl PreParsed {
    /// Parses `src`; `None` when it does not parse (the error is reported with
    /// its template name when the set adds it).
    pub fn parse(src: &str, is_func: &dyn Fn(&str) -> bool) -> Option<Self> {
        let p = parse::parse(src, is_func).ok()?;
        Some(PreParsed {
            src: src.into(),
            shared: SharedParse::new(p),
        })
    }

    /// The source text it was parsed from.
    pub fn src(&self) -> &str {
        &self.src
    }
}

impl SharedParse {
    fn new(p: parse::Parsed) -> Rc<Self> {
        Rc::new(SharedParse {
            root: Rc::new(p.root),
            defines: p
                .defines
                .into_iter()
                .map(|(n, l)| (n, Rc::new(l)))
                .collect(),
        })
    }
}

impl TemplateSet {
    /// Makes an earlier parse available to [`TemplateSet::add`] for its source.
    pub fn seed(&mut self, p: &PreParsed) {
        self.parsed
            .entry(p.src.clone())
            .or_insert_with(|| p.shared.clone());
    }

    /// Parses `src` under `name` and adds its main body and its `define`s.
    /// As in Go, an empty redefinition does not replace an existing template.
    pub fn add(
        &mut self,
        name: &str,
        src: &str,
        is_func: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        let (srcrc, parsed) = match self.parsed.get_key_value(src) {
            Some((k, v)) => (k.clone(), v.clone()),
            None => {
                let p = parse::parse(src, is_func).map_err(|e| {
                    let (l, _) = parse::line_col(src, e.pos);
                    format!("template: {name}:{l}: {}", e.msg)
                })?;
                let shared = SharedParse::new(p);
                let k: Rc<str> = src.into();
                self.parsed.insert(k.clone(), shared.clone());
                (k, shared)
            }
        };
        let file: Rc<str> = name.into();
        for (dname, body) in &parsed.defines {
            self.insert(dname.clone(), file.clone(), srcrc.clone(), body.clone());
        }
        self.insert(file.clone(), file, srcrc, parsed.root.clone());
        Ok(())
    }

    fn insert(&mut self, name: Rc<str>, file: Rc<str>, src: Rc<str>, list: Rc<List>) {
        let empty = list
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()));
        if empty && self.trees.contains_key(&name) {
            return;
        }
        self.trees.insert(
            name.clone(),
            Rc::new(Tree {
                name,
                file,
                src,
                list,
            }),
        );
    }
}

/// The host environment of the executor: functions that need the engine
/// (Helm's `include`, `tpl`, `lookup`) and plain functions.
pub trait Host {
    /// Calls a function by name. `ex` allows re-entering the engine.
    fn call(&self, ex: &mut Exec<'_>, name: &str, args: Vec<Value>) -> Result<Value, String>;
    /// Whether a function of this name exists.
    fn has(&self, name: &str) -> bool;
}

/// Control flow out of a list.
enum Flow {
    Break,
    Continue,
    Err(String),
}

impl From<String> for Flow {
    fn from(s: String) -> Self {
        Flow::Err(s)
    }
}

/// Limits that keep hostile templates bounded.
pub const MAX_DEPTH: usize = 1000;
/// Maximum output size of one render (bytes).
pub const MAX_OUTPUT: usize = 64 << 20;

/// Execution state.
pub struct Exec<'a> {
    /// Template sets, searched from the last to the first (tpl overlays).
    pub sets: Vec<Rc<TemplateSet>>,
    /// The host functions.
    pub host: &'a dyn Host,
    vars: Vec<(Rc<str>, Value)>,
    /// Current nesting depth of template calls.
    pub depth: usize,
    tree: Option<Rc<Tree>>,
    /// Bytes written so far by this execution and nested ones.
    pub written: usize,
    /// Name of the top-level template being rendered (for `.Template.Name`-less errors).
    pub top_name: Rc<str>,
}

impl<'a> Exec<'a> {
    /// A new executor over a template set.
    pub fn new(set: Rc<TemplateSet>, host: &'a dyn Host) -> Self {
        Exec {
            sets: vec![set],
            host,
            vars: Vec::new(),
            depth: 0,
            tree: None,
            written: 0,
            top_name: "".into(),
        }
    }

    /// Looks up a template by name.
    pub fn lookup(&self, name: &str) -> Option<Rc<Tree>> {
        self.sets
            .iter()
            .rev()
            .find_map(|s| s.trees.get(name).cloned())
    }

    /// Executes a named template with `data` into `out`.
    pub fn execute(&mut self, name: &str, data: Value, out: &mut String) -> Result<(), String> {
        let Some(tree) = self.lookup(name) else {
            return Err(format!(
                "template: no template {name:?} associated with template"
            ));
        };
        self.run_tree(tree, data, out)
    }

    /// Runs a tree with fresh variables.
    pub fn run_tree(
        &mut self,
        tree: Rc<Tree>,
        data: Value,
        out: &mut String,
    ) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "template: {}: exceeded maximum template depth ({MAX_DEPTH})",
                tree.name
            ));
        }
        self.depth += 1;
        // Deep include/template chains: grow the stack instead of overflowing.
        stacker::maybe_grow(256 * 1024, 4 * 1024 * 1024, || {
            self.run_tree_inner(tree, data, out)
        })
    }

    fn run_tree_inner(
        &mut self,
        tree: Rc<Tree>,
        data: Value,
        out: &mut String,
    ) -> Result<(), String> {
        let saved_vars = std::mem::replace(&mut self.vars, vec![("".into(), data.clone())]);
        let saved_tree = self.tree.replace(tree.clone());
        let r = self.walk_list(&tree.list, &data, out);
        self.vars = saved_vars;
        self.tree = saved_tree;
        self.depth -= 1;
        match r {
            Ok(()) => Ok(()),
            Err(Flow::Err(e)) => Err(e),
            Err(_) => Err("break or continue outside range".into()),
        }
    }

    fn errf(&self, pos: usize, what: &str, msg: &str) -> String {
        match &self.tree {
            Some(t) => {
                let (l, c) = parse::line_col(&t.src, pos);
                format!(
                    "template: {}:{}:{}: executing {:?} at <{}>: {}",
                    t.file, l, c, &*t.name, what, msg
                )
            }
            None => format!("template: {msg}"),
        }
    }

    fn write(&mut self, out: &mut String, s: &str) -> Result<(), Flow> {
        self.written += s.len();
        if self.written > MAX_OUTPUT {
            return Err(Flow::Err(format!(
                "template: output exceeds the limit of {MAX_OUTPUT} bytes"
            )));
        }
        budget::charge_bytes(s.len() as u64).map_err(|e| self.budget_err(e))?;
        out.push_str(s);
        Ok(())
    }

    /// A budget failure, named after the template that was running.
    fn budget_err(&self, msg: String) -> Flow {
        Flow::Err(match &self.tree {
            Some(t) => format!("template: {}: executing {:?}: {msg}", t.file, &*t.name),
            None => format!("template: {msg}"),
        })
    }

    /// Fails with what a value walker recorded (depth, cycles, size).
    fn check_walkers(&self) -> Result<(), Flow> {
        match budget::take_failure() {
            Some(e) => Err(self.budget_err(e)),
            None => Ok(()),
        }
    }

    fn walk_list(&mut self, list: &List, dot: &Value, out: &mut String) -> Result<(), Flow> {
        for n in list {
            budget::charge_ops(1).map_err(|e| self.budget_err(e))?;
            self.walk(n, dot, out)?;
        }
        Ok(())
    }

    fn walk(&mut self, node: &Node, dot: &Value, out: &mut String) -> Result<(), Flow> {
        match node {
            Node::Text(t) => self.write(out, t),
            Node::Action(p) => {
                let v = self.eval_pipe(p, dot)?;
                if p.decl.is_empty() {
                    match &v {
                        Value::Str(s) => self.write(out, s)?,
                        other => {
                            let s = print_value(other);
                            self.check_walkers()?;
                            self.write(out, &s)?;
                        }
                    }
                }
                Ok(())
            }
            Node::Branch(b) => self.walk_branch(b, dot, out),
            Node::Template { name, pipe, pos } => {
                let data = match pipe {
                    Some(p) => self.eval_pipe(p, dot)?,
                    None => Value::Nil,
                };
                let Some(tree) = self.lookup(name) else {
                    return Err(Flow::Err(self.errf(
                        *pos,
                        &format!("{{{{template {name:?}}}}}"),
                        &format!("template {name:?} not defined"),
                    )));
                };
                let mut buf = String::new();
                self.run_tree(tree, data, &mut buf)?;
                out.push_str(&buf);
                Ok(())
            }
            Node::Break(_) => Err(Flow::Break),
            Node::Continue(_) => Err(Flow::Continue),
        }
    }

    fn walk_branch(&mut self, b: &Branch, dot: &Value, out: &mut String) -> Result<(), Flow> {
        let mark = self.vars.len();
        let r = self.walk_branch_inner(b, dot, out);
        self.vars.truncate(mark);
        r
    }

    fn walk_branch_inner(&mut self, b: &Branch, dot: &Value, out: &mut String) -> Result<(), Flow> {
        match b.kind {
            BranchKind::If | BranchKind::With => {
                let v = self.eval_pipe(&b.pipe, dot)?;
                if v.truthy() {
                    if b.kind == BranchKind::With {
                        self.walk_list(&b.list, &v, out)
                    } else {
                        self.walk_list(&b.list, dot, out)
                    }
                } else if let Some(e) = &b.else_list {
                    self.walk_list(e, dot, out)
                } else {
                    Ok(())
                }
            }
            BranchKind::Range => {
                // Range declares its variables per iteration, not from the pipeline.
                let decl = &b.pipe.decl;
                let v = self.eval_cmds(&b.pipe, dot)?;
                // Lists are walked in place (a range over `until 10000000`
                // must not copy it); map entries are a snapshot, as in Go.
                let entries: Vec<(Value, Value)> = match &v {
                    Value::Nil | Value::List(_) | Value::Bytes(_) => Vec::new(),
                    Value::Map(m) => {
                        let m = m.borrow();
                        budget::charge_items(m.len() as u64, 48).map_err(|e| self.budget_err(e))?;
                        m.iter()
                            .map(|(k, x)| (Value::str(k.as_str()), x.clone()))
                            .collect()
                    }
                    Value::Object(o) if o.range_entries().is_some() => {
                        o.range_entries().unwrap_or_default()
                    }
                    Value::Object(o) if o.as_list().is_some() => o
                        .as_list()
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                        .map(|(i, x)| (Value::Int(i as i64), x))
                        .collect(),
                    other => {
                        return Err(Flow::Err(self.errf(
                            b.pipe.pos,
                            "range",
                            &format!("range can't iterate over {}", print_value(other)),
                        )));
                    }
                };
                let len = match &v {
                    Value::List(l) => l.len(),
                    Value::Bytes(bs) => bs.len(),
                    _ => entries.len(),
                };
                if len == 0 {
                    if let Some(e) = &b.else_list {
                        return self.walk_list(e, dot, out);
                    }
                    return Ok(());
                }
                let mut entries = entries.into_iter();
                let mark = self.vars.len();
                for i in 0..len {
                    budget::charge_ops(1).map_err(|e| self.budget_err(e))?;
                    let (k, x) = match &v {
                        Value::List(l) => (Value::Int(i as i64), l[i].clone()),
                        Value::Bytes(bs) => (Value::Int(i as i64), Value::Int(i64::from(bs[i]))),
                        _ => entries.next().unwrap_or_default(),
                    };
                    self.vars.truncate(mark);
                    match decl.len() {
                        1 => self.vars.push((decl[0].clone(), x.clone())),
                        2 => {
                            self.vars.push((decl[0].clone(), k));
                            self.vars.push((decl[1].clone(), x.clone()));
                        }
                        _ => {}
                    }
                    match self.walk_list(&b.list, &x, out) {
                        Ok(()) | Err(Flow::Continue) => {}
                        Err(Flow::Break) => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// Evaluates the commands of a pipeline, ignoring its declarations.
    fn eval_cmds(&mut self, p: &Pipe, dot: &Value) -> Result<Value, Flow> {
        let mut val: Option<Value> = None;
        for c in &p.cmds {
            let v = self.eval_cmd(c, dot, val.take())?;
            val = Some(v);
        }
        Ok(val.unwrap_or_default())
    }

    fn eval_pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, Flow> {
        let v = self.eval_cmds(p, dot)?;
        for name in &p.decl {
            if p.is_assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                } else {
                    return Err(Flow::Err(self.errf(
                        p.pos,
                        &format!("${name}"),
                        &format!("undefined variable: ${name}"),
                    )));
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn var(&self, name: &str, pos: usize) -> Result<Value, Flow> {
        match self.vars.iter().rev().find(|(n, _)| &**n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(Flow::Err(self.errf(
                pos,
                &format!("${name}"),
                &format!("undefined variable: ${name}"),
            ))),
        }
    }

    fn eval_cmd(&mut self, c: &Cmd, dot: &Value, fin: Option<Value>) -> Result<Value, Flow> {
        let pos = c.arg_pos.first().copied().unwrap_or(c.pos);
        let first = &c.args[0];
        let rest = &c.args[1..];
        match first {
            Arg::Field(fields) => {
                let v = self.eval_fields(dot.clone(), fields, rest, fin, dot, pos)?;
                Ok(v)
            }
            Arg::Var(name, fields) => {
                let base = self.var(name, pos)?;
                if fields.is_empty() {
                    self.not_a_function(rest, &fin, pos, &format!("${name}"))?;
                    return Ok(base);
                }
                self.eval_fields(base, fields, rest, fin, dot, pos)
            }
            Arg::Chain(inner, fields) => {
                let base = self.eval_arg(inner, dot, pos)?;
                self.eval_fields(base, fields, rest, fin, dot, pos)
            }
            Arg::Ident(name) => {
                let mut args = Vec::with_capacity(rest.len() + 1);
                // `and`/`or` short-circuit.
                if &**name == "and" || &**name == "or" {
                    let is_and = &**name == "and";
                    let total = rest.len() + usize::from(fin.is_some());
                    if total == 0 {
                        return Err(Flow::Err(self.errf(
                            pos,
                            name,
                            &format!("wrong number of args for {name}: want at least 1 got 0"),
                        )));
                    }
                    let mut last = Value::Nil;
                    for a in rest {
                        last = self.eval_arg(a, dot, pos)?;
                        if last.truthy() != is_and {
                            return Ok(last);
                        }
                    }
                    if let Some(f) = fin {
                        last = f;
                    }
                    return Ok(last);
                }
                for a in rest {
                    args.push(self.eval_arg(a, dot, pos)?);
                }
                if let Some(f) = fin {
                    args.push(f);
                }
                self.call(name, args, pos)
            }
            Arg::Pipe(p) => {
                self.not_a_function(rest, &fin, pos, "(pipeline)")?;
                let mark = self.vars.len();
                let r = self.eval_pipe(p, dot);
                self.vars.truncate(mark);
                r
            }
            other => {
                self.not_a_function(rest, &fin, pos, &arg_text(other))?;
                if matches!(other, Arg::Nil) {
                    return Err(Flow::Err(self.errf(pos, "nil", "nil is not a command")));
                }
                self.eval_arg(other, dot, pos)
            }
        }
    }

    /// Calls a host function, charging one operation and the bytes of its result.
    fn call(&mut self, name: &str, args: Vec<Value>, pos: usize) -> Result<Value, Flow> {
        let host = self.host;
        let r = budget::charge_ops(1).and_then(|()| host.call(self, name, args));
        let v =
            r.map_err(|e| Flow::Err(self.errf(pos, name, &format!("error calling {name}: {e}"))))?;
        if let Some(e) = budget::take_failure() {
            return Err(Flow::Err(self.errf(
                pos,
                name,
                &format!("error calling {name}: {e}"),
            )));
        }
        budget::charge_bytes(approx_size(&v))
            .map_err(|e| Flow::Err(self.errf(pos, name, &format!("error calling {name}: {e}"))))?;
        Ok(v)
    }

    fn not_a_function(
        &self,
        rest: &[Arg],
        fin: &Option<Value>,
        pos: usize,
        what: &str,
    ) -> Result<(), Flow> {
        if !rest.is_empty() || fin.is_some() {
            return Err(Flow::Err(self.errf(
                pos,
                what,
                &format!("can't give argument to non-function {what}"),
            )));
        }
        Ok(())
    }

    fn eval_arg(&mut self, a: &Arg, dot: &Value, pos: usize) -> Result<Value, Flow> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Nil => Value::Nil,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Str(s) => Value::Str(s.clone()),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Field(fields) => self.eval_fields(dot.clone(), fields, &[], None, dot, pos)?,
            Arg::Var(name, fields) => {
                let base = self.var(name, pos)?;
                if fields.is_empty() {
                    base
                } else {
                    self.eval_fields(base, fields, &[], None, dot, pos)?
                }
            }
            Arg::Chain(inner, fields) => {
                let base = self.eval_arg(inner, dot, pos)?;
                self.eval_fields(base, fields, &[], None, dot, pos)?
            }
            Arg::Pipe(p) => {
                let mark = self.vars.len();
                let r = self.eval_pipe(p, dot);
                self.vars.truncate(mark);
                r?
            }
            Arg::Ident(name) => self.call(name, Vec::new(), pos)?,
        })
    }

    /// Evaluates a field chain; the last field receives the arguments.
    fn eval_fields(
        &mut self,
        mut recv: Value,
        fields: &[Rc<str>],
        args: &[Arg],
        fin: Option<Value>,
        dot: &Value,
        pos: usize,
    ) -> Result<Value, Flow> {
        let n = fields.len();
        for (i, f) in fields.iter().enumerate() {
            let last = i + 1 == n;
            let has_args = last && (!args.is_empty() || fin.is_some());
            recv = match &recv {
                Value::Map(m) => {
                    if has_args {
                        return Err(Flow::Err(self.errf(
                            pos,
                            &field_text(fields),
                            &format!("{f} is not a method but has arguments"),
                        )));
                    }
                    m.borrow().get(&**f).cloned().unwrap_or(Value::Nil)
                }
                Value::Object(o) => {
                    let mut av = Vec::new();
                    if last {
                        for a in args {
                            av.push(self.eval_arg(a, dot, pos)?);
                        }
                        if let Some(fv) = fin.clone() {
                            av.push(fv);
                        }
                    }
                    match o.call(f, &av) {
                        Some(Ok(v)) => v,
                        Some(Err(e)) => {
                            return Err(Flow::Err(self.errf(
                                pos,
                                &field_text(fields),
                                &format!("error calling {f}: {e}"),
                            )));
                        }
                        None => {
                            return Err(Flow::Err(self.errf(
                                pos,
                                &field_text(fields),
                                &format!("can't evaluate field {f} in type {}", o.type_name()),
                            )));
                        }
                    }
                }
                // Go digs nil out of interfaces at the end of a pipeline: a nil
                // value that starts a chain yields nil, a nil reached through
                // a map inside the chain is an error.
                Value::Nil if i == 0 => return Ok(Value::Nil),
                Value::Nil => {
                    return Err(Flow::Err(self.errf(
                        pos,
                        &field_text(fields),
                        &format!("nil pointer evaluating interface {{}}.{f}"),
                    )));
                }
                other => {
                    return Err(Flow::Err(self.errf(
                        pos,
                        &field_text(fields),
                        &format!("can't evaluate field {f} in type {}", other.type_name()),
                    )));
                }
            };
        }
        Ok(recv)
    }
}

fn field_text(fields: &[Rc<str>]) -> String {
    let mut s = String::new();
    for f in fields {
        s.push('.');
        s.push_str(f);
    }
    s
}

fn arg_text(a: &Arg) -> String {
    match a {
        Arg::Dot => ".".into(),
        Arg::Nil => "nil".into(),
        Arg::Bool(b) => b.to_string(),
        Arg::Str(s) => format!("{s:?}"),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Ident(i) => i.to_string(),
        Arg::Field(f) => field_text(f),
        Arg::Var(n, f) => format!("${n}{}", field_text(f)),
        Arg::Chain(_, f) => format!("(...){}", field_text(f)),
        Arg::Pipe(_) => "(pipeline)".into(),
    }
}

/// The bytes a function result made, for the memory budget: a result that
/// something else holds too (a map returned by `set`, a value read by
/// `index`) was not made by the call and counts nothing.
fn approx_size(v: &Value) -> u64 {
    match v {
        Value::Str(s) if Rc::strong_count(s) == 1 => s.len() as u64,
        Value::Bytes(b) if Rc::strong_count(b) == 1 => b.len() as u64,
        Value::List(l) if Rc::strong_count(l) == 1 => 32 + 24 * l.len() as u64,
        // A B-tree node holds up to 11 entries.
        Value::Map(m) if Rc::strong_count(m) == 1 => 64 + 48 * (m.borrow().len() as u64).max(11),
        _ => 0,
    }
}

/// Prints a value as `{{ . }}` does: `<no value>` for nil, `fmt.Print` otherwise.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Nil => "<no value>".into(),
        other => gofmt::sprint_one(other),
    }
}
