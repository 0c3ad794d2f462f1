//! Lexer and parser for Go `text/template` source.
//!
//! The grammar follows Go's `text/template/parse`: text and actions delimited
//! by `{{ }}`, trim markers `{{- ` and ` -}}`, comments, pipelines with
//! declarations, and the control structures `if`/`else if`/`with`/`else with`/
//! `range`/`break`/`continue`/`define`/`template`/`block`.

use std::rc::Rc;

/// A parsed template body.
pub type List = Vec<Node>;

/// A node of a template body.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(Rc<str>),
    /// `{{pipeline}}`: prints unless it declares variables.
    Action(Pipe),
    /// `if`/`with`/`range`.
    Branch(Box<Branch>),
    /// `{{template "name" pipeline}}`.
    Template {
        /// Template name.
        name: Rc<str>,
        /// The data, or `None` for nil.
        pipe: Option<Pipe>,
        /// Source position.
        pos: usize,
    },
    /// `{{break}}`.
    Break(usize),
    /// `{{continue}}`.
    Continue(usize),
}

/// The kind of a branch node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchKind {
    /// `if`
    If,
    /// `with`
    With,
    /// `range`
    Range,
}

/// `if`, `with` or `range` with its bodies.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Which control structure.
    pub kind: BranchKind,
    /// The condition / data pipeline.
    pub pipe: Pipe,
    /// The body.
    pub list: List,
    /// The `else` body.
    pub else_list: Option<List>,
}

/// A pipeline: optional variable declaration and commands joined by `|`.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Declared or assigned variables (names without `$`).
    pub decl: Vec<Rc<str>>,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    /// The commands.
    pub cmds: Vec<Cmd>,
    /// Source position (byte offset).
    pub pos: usize,
}

/// One command of a pipeline: an operand followed by arguments.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Operands.
    pub args: Vec<Arg>,
    /// Position of each operand as Go reports it (a field chain reports its
    /// second field).
    pub arg_pos: Vec<usize>,
    /// Source position.
    pub pos: usize,
}

/// An operand.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.`
    Dot,
    /// `nil`
    Nil,
    /// `true`/`false`.
    Bool(bool),
    /// A string literal.
    Str(Rc<str>),
    /// An integer literal (also character constants).
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A function name.
    Ident(Rc<str>),
    /// `.A.B`
    Field(Vec<Rc<str>>),
    /// `$x.A.B` (empty name is `$`).
    Var(Rc<str>, Vec<Rc<str>>),
    /// `(pipeline).A.B`
    Chain(Box<Arg>, Vec<Rc<str>>),
    /// `(pipeline)`
    Pipe(Box<Pipe>),
}

/// A parse error with its byte offset.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// Byte offset in the source.
    pub pos: usize,
    /// Message as Go prints it.
    pub msg: String,
}

/// Result of parsing one source: the main body and the `define`d templates.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The top-level body.
    pub root: List,
    /// `define`/`block` templates in order of appearance.
    pub defines: Vec<(Rc<str>, List)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Dot,
    Field(Rc<str>),
    Var(Rc<str>),
    Ident(Rc<str>),
    Str(Rc<str>),
    Char(i64),
    Number(Rc<str>),
    Declare,
    Assign,
    Pipe,
    LParen,
    RParen,
    Comma,
}

#[derive(Debug)]
enum Item {
    Text(Rc<str>),
    Action(usize, Vec<(usize, Tok)>),
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// The next `{{` at or after `from`. Searches for `{` with `memchr` (a
/// substring searcher per action cost more than the search itself).
fn find_open(src: &str, mut from: usize) -> Option<usize> {
    let b = src.as_bytes();
    while let Some(p) = src[from..].find('{') {
        let at = from + p;
        if b.get(at + 1) == Some(&b'{') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Splits source into text and lexed actions.
fn lex(src: &str) -> Result<Vec<Item>, ParseError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    let mut trim_next = false;
    loop {
        let start = i;
        let found = find_open(src, i);
        let end = found.unwrap_or(b.len());
        let mut text = &src[start..end];
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(open) = found else {
            if !text.is_empty() {
                items.push(Item::Text(text.into()));
            }
            break;
        };
        let mut j = open + 2;
        // Left trim marker: "{{- " with a space after the dash.
        if j + 1 < b.len() && b[j] == b'-' && is_space(b[j + 1]) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            j += 2;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.into()));
        }
        // Comment?
        let mut k = j;
        while k < b.len() && is_space(b[k]) {
            k += 1;
        }
        if src[k..].starts_with("/*") {
            let Some(close) = src[k + 2..].find("*/") else {
                return Err(ParseError {
                    pos: open,
                    msg: "unclosed comment".into(),
                });
            };
            let mut m = k + 2 + close + 2;
            let rest = &src[m..];
            if rest.starts_with("}}") {
                trim_next = false;
                m += 2;
            } else if rest.len() >= 4
                && is_space(rest.as_bytes()[0])
                && rest[1..].starts_with("-}}")
            {
                trim_next = true;
                m += 4;
            } else {
                return Err(ParseError {
                    pos: m,
                    msg: "comment ends before closing delimiter".into(),
                });
            }
            i = m;
            continue;
        }
        let (toks, after, trim) = lex_action(src, j)?;
        items.push(Item::Action(open, toks));
        trim_next = trim;
        i = after;
    }
    Ok(items)
}

/// Lexes one action starting after `{{`; returns tokens, the offset after
/// `}}`, and whether the right trim marker was present.
/// Tokens of one action with their byte offsets.
type ActionToks = Vec<(usize, Tok)>;

fn lex_action(src: &str, mut i: usize) -> Result<(ActionToks, usize, bool), ParseError> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut paren = 0i32;
    let err = |pos: usize, msg: &str| ParseError {
        pos,
        msg: msg.to_string(),
    };
    loop {
        if i >= b.len() {
            return Err(err(i, "unclosed action"));
        }
        let c = b[i];
        // Right delimiter, possibly with trim marker.
        if src[i..].starts_with("}}") {
            if paren > 0 {
                return Err(err(i, "unclosed left paren"));
            }
            return Ok((toks, i + 2, false));
        }
        if is_space(c) {
            let s = i;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            if src[i..].starts_with("-}}") {
                if paren > 0 {
                    return Err(err(i, "unclosed left paren"));
                }
                return Ok((toks, i + 3, true));
            }
            toks.push((s, Tok::Space));
            continue;
        }
        let s = i;
        match c {
            b'|' => {
                toks.push((s, Tok::Pipe));
                i += 1;
            }
            b'(' => {
                paren += 1;
                toks.push((s, Tok::LParen));
                i += 1;
            }
            b')' => {
                paren -= 1;
                if paren < 0 {
                    return Err(err(s, "unexpected right paren"));
                }
                toks.push((s, Tok::RParen));
                i += 1;
            }
            b',' => {
                toks.push((s, Tok::Comma));
                i += 1;
            }
            b':' => {
                if b.get(i + 1) == Some(&b'=') {
                    toks.push((s, Tok::Declare));
                    i += 2;
                } else {
                    return Err(err(s, "expected :="));
                }
            }
            b'=' => {
                toks.push((s, Tok::Assign));
                i += 1;
            }
            b'"' => {
                let (v, n) = lex_quote(src, i)?;
                toks.push((s, Tok::Str(v.into())));
                i = n;
            }
            b'`' => {
                let Some(end) = src[i + 1..].find('`') else {
                    return Err(err(s, "unterminated raw quoted string"));
                };
                toks.push((s, Tok::Str(src[i + 1..i + 1 + end].into())));
                i = i + 2 + end;
            }
            b'\'' => {
                let (v, n) = lex_char(src, i)?;
                toks.push((s, Tok::Char(v)));
                i = n;
            }
            b'$' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                toks.push((s, Tok::Var(src[s + 1..i].into())));
            }
            b'.' => {
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let n = lex_number(src, i);
                    toks.push((s, Tok::Number(src[i..n].into())));
                    i = n;
                } else {
                    i += 1;
                    let fs = i;
                    while i < b.len()
                        && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                    {
                        i += 1;
                    }
                    if fs == i {
                        toks.push((s, Tok::Dot));
                    } else {
                        toks.push((s, Tok::Field(src[fs..i].into())));
                    }
                }
            }
            b'+' | b'-' | b'0'..=b'9' => {
                let n = lex_number(src, i);
                if n == i || (n == i + 1 && !c.is_ascii_digit()) {
                    return Err(err(s, &format!("bad character {:?}", c as char)));
                }
                toks.push((s, Tok::Number(src[i..n].into())));
                i = n;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                toks.push((s, Tok::Ident(src[s..i].into())));
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err(s, &format!("unexpected {ch:?} in command")));
            }
        }
    }
}

fn lex_number(src: &str, mut i: usize) -> usize {
    let b = src.as_bytes();
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exp_sign =
            (c == b'+' || c == b'-') && i > 0 && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn lex_quote(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut it = src[start + 1..].char_indices();
    let err = |msg: &str| ParseError {
        pos: start,
        msg: msg.into(),
    };
    while let Some((k, c)) = it.next() {
        match c {
            '"' => return Ok((out, start + 1 + k + 1)),
            '\n' => return Err(err("unterminated quoted string")),
            '\\' => {
                let Some((_, e)) = it.next() else {
                    return Err(err("unterminated quoted string"));
                };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..n {
                            let Some((_, h)) = it.next() else {
                                return Err(err("unterminated quoted string"));
                            };
                            v = v * 16 + h.to_digit(16).ok_or_else(|| err("bad escape"))?;
                        }
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let Some((_, h)) = it.next() else {
                                return Err(err("unterminated quoted string"));
                            };
                            v = v * 8 + h.to_digit(8).ok_or_else(|| err("bad escape"))?;
                        }
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    _ => return Err(err("invalid syntax")),
                }
            }
            c => out.push(c),
        }
    }
    Err(err("unterminated quoted string"))
}

fn lex_char(src: &str, start: usize) -> Result<(i64, usize), ParseError> {
    let rest = &src[start + 1..];
    let err = || ParseError {
        pos: start,
        msg: "unterminated character constant".into(),
    };
    let mut it = rest.char_indices();
    let (_, c) = it.next().ok_or_else(err)?;
    let v = if c == '\\' {
        let (_, e) = it.next().ok_or_else(err)?;
        match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            '\\' => '\\',
            '\'' => '\'',
            // Go's \x, \u, \U and three-digit octal escapes.
            'x' | 'u' | 'U' | '0'..='7' => {
                let (radix, n, first) = match e {
                    'x' => (16, 2, 0),
                    'u' => (16, 4, 0),
                    'U' => (16, 8, 0),
                    _ => (8, 2, e.to_digit(8).unwrap_or(0)),
                };
                let mut v = first;
                for _ in 0..n {
                    let (_, h) = it.next().ok_or_else(err)?;
                    v = v * radix + h.to_digit(radix).ok_or_else(err)?;
                }
                char::from_u32(v).ok_or_else(err)?
            }
            _ => return Err(err()),
        }
    } else {
        c
    };
    let (k, q) = it.next().ok_or_else(err)?;
    if q != '\'' {
        return Err(err());
    }
    Ok((v as i64, start + 1 + k + 1))
}

/// Parses a Go number literal into an int or a float operand, as
/// `text/template` does: an integer literal in any base (`0x1F`, `0o17`,
/// `017`, `0b101`, `1_000`) is an `int`; a literal with a fraction or an
/// exponent (`1.5`, `.5`, `1e3`, hex floats such as `0x1p60` or `0x1.8p-2`)
/// is a `float64`.
fn parse_number(s: &str) -> Option<Arg> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if !underscores_ok(body) {
        return None;
    }
    let t: String = body.chars().filter(|c| *c != '_').collect();
    let body = t.as_str();
    let hex = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X"));
    let sign = |f: f64| if neg { -f } else { f };
    if let Some(h) = hex {
        if h.contains(['p', 'P']) {
            return parse_hex_float(h).map(|f| Arg::Float(sign(f)));
        }
        if h.contains('.') {
            // Go: a hex mantissa needs a 'p' exponent.
            return None;
        }
    } else if body.contains(['.', 'e', 'E']) {
        if !body
            .bytes()
            .all(|c| c.is_ascii_digit() || b".eE+-".contains(&c))
        {
            return None;
        }
        let f: f64 = body.parse().ok()?;
        return Some(Arg::Float(sign(f)));
    }
    let int = if let Some(h) = hex {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        i64::from_str_radix(bn, 2).ok()
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()
    } else if body.bytes().all(|c| c.is_ascii_digit()) {
        body.parse::<i64>().ok()
    } else {
        None
    };
    // Past int64 but a valid integer literal: Go's NumberNode also holds it
    // as a float, and `text/template` then reports the overflow (None here).
    int.map(|i| Arg::Int(if neg { i.wrapping_neg() } else { i }))
}

/// Go's rule for `_` in number literals: only between digits, or between a
/// base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    if !s.contains('_') {
        return true;
    }
    let b = s.as_bytes();
    let prefixed = b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'x' | b'o' | b'b');
    let start = if prefixed { 2 } else { 0 };
    let is_digit = |c: u8| c.is_ascii_hexdigit();
    for (i, &c) in b.iter().enumerate().skip(start) {
        if c != b'_' {
            continue;
        }
        let before_ok = if i == start {
            prefixed
        } else {
            is_digit(b[i - 1])
        };
        let after_ok = b.get(i + 1).is_some_and(|&n| is_digit(n));
        if !before_ok || !after_ok {
            return false;
        }
    }
    true
}

/// A hex float mantissa and binary exponent (`1.8p-2`, after `0x`).
fn parse_hex_float(h: &str) -> Option<f64> {
    let (mant, exp) = h.split_once(['p', 'P'])?;
    let exp: i32 = exp.parse().ok()?;
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // Up to 15 significant hex digits (60 bits) exactly; later ones only move
    // the binary point (rounded away, as they are below f64's precision).
    let mut m: u64 = 0;
    let mut digits = 0;
    let mut shift: i32 = 0;
    for c in int.chars() {
        let d = c.to_digit(16)?;
        if digits < 15 {
            m = m * 16 + u64::from(d);
            if m != 0 {
                digits += 1;
            }
        } else {
            shift += 4;
        }
    }
    for c in frac.chars() {
        let d = c.to_digit(16)?;
        if digits < 15 {
            m = m * 16 + u64::from(d);
            if m != 0 {
                digits += 1;
            }
            shift -= 4;
        }
    }
    Some(m as f64 * 2f64.powi(exp.saturating_add(shift)))
}

/// Parses template source into its main body and defined templates.
/// `funcs` tells which identifiers are functions (unknown ones are errors, as in Go).
pub fn parse(src: &str, is_func: &dyn Fn(&str) -> bool) -> Result<Parsed, ParseError> {
    let items = lex(src)?;
    let mut p = Parser {
        nesting: std::cell::Cell::new(0),
        items,
        idx: 0,
        is_func,
        defines: Vec::new(),
        range_depth: 0,
    };
    let (root, end) = p.list(true)?;
    if let Some((pos, kw)) = end {
        return Err(ParseError {
            pos,
            msg: format!("unexpected {{{{{kw}}}}}"),
        });
    }
    Ok(Parsed {
        root,
        defines: p.defines,
    })
}

/// Deepest accepted nesting of control structures and parentheses.
pub const MAX_NESTING: usize = 1000;

struct Parser<'a> {
    nesting: std::cell::Cell<usize>,
    items: Vec<Item>,
    idx: usize,
    is_func: &'a dyn Fn(&str) -> bool,
    defines: Vec<(Rc<str>, List)>,
    range_depth: usize,
}

/// Token cursor over one action.
struct Toks<'t> {
    toks: &'t [(usize, Tok)],
    i: usize,
    end_pos: usize,
}

impl Toks<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end_pos, |t| t.0)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|t| t.1.clone());
        self.i += 1;
        t
    }
    fn skip_space(&mut self) {
        while let Some(Tok::Space) = self.peek() {
            self.i += 1;
        }
    }
}

/// What ended a list: `end`, `else` (with the rest of the action), or EOF.
type ListEnd = Option<(usize, String)>;

impl Parser<'_> {
    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            pos,
            msg: msg.into(),
        })
    }

    /// Parses nodes until `{{end}}`/`{{else ...}}` or EOF. Returns the
    /// terminating keyword ("end" or "else") with its position.
    fn list(&mut self, top: bool) -> Result<(List, ListEnd), ParseError> {
        let mut out = Vec::new();
        while self.idx < self.items.len() {
            let idx = self.idx;
            self.idx += 1;
            match &mut self.items[idx] {
                Item::Text(t) => out.push(Node::Text(t.clone())),
                Item::Action(pos, toks) => {
                    let pos = *pos;
                    // Each action is consumed once (an `else` is put back below).
                    let toks = std::mem::take(toks);
                    let mut tk = Toks {
                        toks: &toks,
                        i: 0,
                        end_pos: pos,
                    };
                    tk.skip_space();
                    if tk.peek().is_none() {
                        return self.err(pos, "missing value for command");
                    }
                    if let Some(Tok::Ident(kw)) = tk.peek().cloned() {
                        match &*kw {
                            "end" => {
                                tk.next();
                                tk.skip_space();
                                if tk.peek().is_some() {
                                    return self.err(pos, "unexpected token in end");
                                }
                                return Ok((out, Some((pos, "end".into()))));
                            }
                            "else" => {
                                // Leave the cursor on this item for the caller.
                                self.items[idx] = Item::Action(pos, toks);
                                self.idx = idx;
                                return Ok((out, Some((pos, "else".into()))));
                            }
                            "if" | "with" | "range" => {
                                tk.next();
                                let kind = match &*kw {
                                    "if" => BranchKind::If,
                                    "with" => BranchKind::With,
                                    _ => BranchKind::Range,
                                };
                                let n = self.branch(kind, &mut tk, pos)?;
                                out.push(n);
                                continue;
                            }
                            "define" => {
                                if !top {
                                    return self.err(pos, "unexpected <define> in command");
                                }
                                tk.next();
                                let name = self.template_name(&mut tk, pos, "define")?;
                                tk.skip_space();
                                if tk.peek().is_some() {
                                    return self.err(pos, "unexpected token in define clause");
                                }
                                let (body, end) = self.list(false)?;
                                match end {
                                    Some((_, k)) if k == "end" => {}
                                    Some((p, _)) => return self.err(p, "unexpected {{else}}"),
                                    None => return self.err(pos, "unexpected EOF"),
                                }
                                let non_empty = !is_empty_list(&body);
                                if non_empty
                                    && self
                                        .defines
                                        .iter()
                                        .any(|(n, b)| *n == name && !is_empty_list(b))
                                {
                                    return self.err(
                                        pos,
                                        format!(
                                            "template: multiple definition of template {name:?}"
                                        ),
                                    );
                                }
                                self.defines.push((name, body));
                                continue;
                            }
                            "block" => {
                                tk.next();
                                let name = self.template_name(&mut tk, pos, "block")?;
                                tk.skip_space();
                                let pipe = if tk.peek().is_some() {
                                    Some(self.pipeline(&mut tk, false)?)
                                } else {
                                    None
                                };
                                let (body, end) = self.list(false)?;
                                match end {
                                    Some((_, k)) if k == "end" => {}
                                    Some((p, _)) => return self.err(p, "unexpected {{else}}"),
                                    None => return self.err(pos, "unexpected EOF"),
                                }
                                self.defines.push((name.clone(), body));
                                out.push(Node::Template { name, pipe, pos });
                                continue;
                            }
                            "template" => {
                                tk.next();
                                let name = self.template_name(&mut tk, pos, "template")?;
                                tk.skip_space();
                                let pipe = if tk.peek().is_some() {
                                    Some(self.pipeline(&mut tk, false)?)
                                } else {
                                    None
                                };
                                out.push(Node::Template { name, pipe, pos });
                                continue;
                            }
                            "break" | "continue" => {
                                tk.next();
                                tk.skip_space();
                                if tk.peek().is_some() {
                                    return self
                                        .err(pos, format!("unexpected token in {{{{{kw}}}}}"));
                                }
                                if self.range_depth == 0 {
                                    return self
                                        .err(pos, format!("{{{{{kw}}}}} outside {{{{range}}}}"));
                                }
                                out.push(if &*kw == "break" {
                                    Node::Break(pos)
                                } else {
                                    Node::Continue(pos)
                                });
                                continue;
                            }
                            _ => {}
                        }
                    }
                    let pipe = self.pipeline(&mut tk, true)?;
                    out.push(Node::Action(pipe));
                }
            }
        }
        Ok((out, None))
    }

    fn template_name(
        &self,
        tk: &mut Toks<'_>,
        pos: usize,
        ctx: &str,
    ) -> Result<Rc<str>, ParseError> {
        tk.skip_space();
        match tk.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => self.err(pos, format!("unexpected token in {ctx} clause")),
        }
    }

    fn enter(&self, pos: usize) -> Result<(), ParseError> {
        let n = self.nesting.get() + 1;
        if n > MAX_NESTING {
            return self.err(pos, format!("nesting deeper than {MAX_NESTING}"));
        }
        self.nesting.set(n);
        Ok(())
    }

    fn leave(&self) {
        self.nesting.set(self.nesting.get().saturating_sub(1));
    }

    fn branch(
        &mut self,
        kind: BranchKind,
        tk: &mut Toks<'_>,
        pos: usize,
    ) -> Result<Node, ParseError> {
        self.enter(pos)?;
        let r = stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || {
            self.branch_inner(kind, tk, pos)
        });
        self.leave();
        r
    }

    fn branch_inner(
        &mut self,
        kind: BranchKind,
        tk: &mut Toks<'_>,
        pos: usize,
    ) -> Result<Node, ParseError> {
        tk.skip_space();
        let pipe = self.pipeline(tk, true)?;
        if pipe.cmds.is_empty() {
            return self.err(pos, "missing value for command");
        }
        if kind == BranchKind::Range {
            self.range_depth += 1;
        }
        let res = self.list(false);
        if kind == BranchKind::Range {
            self.range_depth -= 1;
        }
        let (list, end) = res?;
        let else_list = match end {
            None => return self.err(pos, "unexpected EOF"),
            Some((_, k)) if k == "end" => None,
            Some((epos, _)) => {
                // The cursor is on the else action; consume it.
                let idx = self.idx;
                self.idx += 1;
                let Item::Action(_, toks) = &mut self.items[idx] else {
                    return self.err(epos, "unexpected else");
                };
                let toks = std::mem::take(toks);
                let mut et = Toks {
                    toks: &toks,
                    i: 0,
                    end_pos: epos,
                };
                et.skip_space();
                et.next(); // else
                et.skip_space();
                match et.peek().cloned() {
                    None => {
                        let (l, e) = self.list(false)?;
                        match e {
                            Some((_, k)) if k == "end" => Some(l),
                            Some((p, _)) => return self.err(p, "expected end; found {{else}}"),
                            None => return self.err(pos, "unexpected EOF"),
                        }
                    }
                    Some(Tok::Ident(k)) if &*k == "if" || &*k == "with" => {
                        et.next();
                        let sub_kind = if &*k == "if" {
                            BranchKind::If
                        } else {
                            BranchKind::With
                        };
                        // `else if` shares the enclosing `end`.
                        let n = self.branch(sub_kind, &mut et, epos)?;
                        Some(vec![n])
                    }
                    _ => return self.err(epos, "unexpected token in else"),
                }
            }
        };
        Ok(Node::Branch(Box::new(Branch {
            kind,
            pipe,
            list,
            else_list,
        })))
    }

    /// Parses a pipeline up to the end of the action or a closing paren.
    fn pipeline(&self, tk: &mut Toks<'_>, allow_decl: bool) -> Result<Pipe, ParseError> {
        tk.skip_space();
        let pos = tk.pos();
        let mut decl = Vec::new();
        let mut is_assign = false;
        if allow_decl {
            // Look for `$x :=`, `$x =`, `$x, $y :=`.
            let save = tk.i;
            let mut names = Vec::new();
            let mut ok = false;
            loop {
                tk.skip_space();
                let Some(Tok::Var(v)) = tk.peek().cloned() else {
                    break;
                };
                tk.next();
                // A field right after the variable means it is an operand.
                if matches!(tk.peek(), Some(Tok::Field(_))) {
                    break;
                }
                names.push(v);
                tk.skip_space();
                match tk.peek() {
                    Some(Tok::Declare) => {
                        tk.next();
                        ok = true;
                        break;
                    }
                    Some(Tok::Assign) => {
                        tk.next();
                        ok = true;
                        is_assign = true;
                        break;
                    }
                    Some(Tok::Comma) => {
                        tk.next();
                        continue;
                    }
                    _ => break,
                }
            }
            if ok {
                if names.len() > 2 {
                    return self.err(pos, "too many declarations");
                }
                decl = names;
            } else {
                tk.i = save;
                is_assign = false;
            }
        }
        let mut cmds = Vec::new();
        loop {
            tk.skip_space();
            match tk.peek() {
                None | Some(Tok::RParen) => break,
                _ => {}
            }
            let cmd = self.command(tk)?;
            cmds.push(cmd);
            tk.skip_space();
            match tk.peek() {
                Some(Tok::Pipe) => {
                    // Go's parser lets a command end with its `|`: a pipeline
                    // ending in `| }}` or `| )` is the pipeline without it.
                    tk.next();
                }
                None | Some(Tok::RParen) => break,
                Some(t) => return self.err(tk.pos(), format!("unexpected {t:?} in operand")),
            }
        }
        if cmds.is_empty() && !decl.is_empty() {
            return self.err(pos, "missing value for command");
        }
        Ok(Pipe {
            decl,
            is_assign,
            cmds,
            pos,
        })
    }

    fn command(&self, tk: &mut Toks<'_>) -> Result<Cmd, ParseError> {
        let pos = tk.pos();
        let mut args = Vec::new();
        let mut arg_pos = Vec::new();
        loop {
            tk.skip_space();
            match tk.peek() {
                None | Some(Tok::Pipe) | Some(Tok::RParen) => break,
                _ => {}
            }
            let start = tk.i;
            let a = self.operand(tk)?;
            // Go reports a field chain at its second field.
            let second = match &a {
                Arg::Field(f) if f.len() > 1 => tk.toks.get(start + 1).map(|t| t.0),
                Arg::Var(_, f) | Arg::Chain(_, f) if !f.is_empty() => None,
                _ => None,
            };
            arg_pos.push(second.unwrap_or_else(|| tk.toks.get(start).map_or(pos, |t| t.0)));
            args.push(a);
            match tk.peek() {
                None | Some(Tok::Space) | Some(Tok::Pipe) | Some(Tok::RParen) => {}
                Some(t) => return self.err(tk.pos(), format!("unexpected {t:?} in operand")),
            }
        }
        if args.is_empty() {
            return self.err(pos, "empty command");
        }
        Ok(Cmd { args, arg_pos, pos })
    }

    fn operand(&self, tk: &mut Toks<'_>) -> Result<Arg, ParseError> {
        let pos = tk.pos();
        let term = match tk.next() {
            Some(Tok::Dot) => Arg::Dot,
            Some(Tok::Field(f)) => {
                let mut fields = vec![f];
                while let Some(Tok::Field(f)) = tk.peek().cloned() {
                    tk.next();
                    fields.push(f);
                }
                return Ok(Arg::Field(fields));
            }
            Some(Tok::Var(v)) => {
                let mut fields = Vec::new();
                while let Some(Tok::Field(f)) = tk.peek().cloned() {
                    tk.next();
                    fields.push(f);
                }
                return Ok(Arg::Var(v, fields));
            }
            Some(Tok::Str(s)) => Arg::Str(s),
            Some(Tok::Char(c)) => Arg::Int(c),
            Some(Tok::Number(n)) => match parse_number(&n) {
                Some(a) => a,
                None => return self.err(pos, format!("illegal number syntax: {n:?}")),
            },
            Some(Tok::Ident(id)) => match &*id {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => {
                    if !(self.is_func)(&id) {
                        return self.err(pos, format!("function {id:?} not defined"));
                    }
                    Arg::Ident(id)
                }
            },
            Some(Tok::LParen) => {
                self.enter(pos)?;
                let p = stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || self.pipeline(tk, true));
                self.leave();
                let p = p?;
                match tk.next() {
                    Some(Tok::RParen) => {}
                    _ => return self.err(pos, "unclosed left paren"),
                }
                Arg::Pipe(Box::new(p))
            }
            Some(t) => return self.err(pos, format!("unexpected {t:?} in operand")),
            None => return self.err(pos, "missing value"),
        };
        let mut fields = Vec::new();
        while let Some(Tok::Field(f)) = tk.peek().cloned() {
            tk.next();
            fields.push(f);
        }
        if fields.is_empty() {
            return Ok(term);
        }
        match term {
            Arg::Bool(_) | Arg::Str(_) | Arg::Int(_) | Arg::Float(_) | Arg::Nil | Arg::Dot => {
                self.err(pos, "unexpected . after term")
            }
            t => Ok(Arg::Chain(Box::new(t), fields)),
        }
    }
}

/// Go's `IsEmptyTree`: only whitespace text.
pub fn is_empty_list(l: &List) -> bool {
    l.iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

/// Converts a byte offset into Go's `line:col` (1-based line, 0-based byte column... Go
/// reports the column as a 1-based count of bytes since the line start minus one).
pub fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(src.len());
    let before = &src.as_bytes()[..pos];
    let line = before.iter().filter(|c| **c == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|c| **c != b'\n').count();
    (line, col)
}

/// A cheap check used by the loader: does the name look like a partial?
pub fn is_partial(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|b| b.starts_with('_'))
}
