//! Go's `fmt` formatting for template values: `%v` printing, `fmt.Sprint`,
//! `fmt.Sprintln` and `fmt.Sprintf` with Go's verbs, flags and error forms
//! (`%!d(string=x)`, `%!v(MISSING)`, `%!(EXTRA ...)`).

use crate::value::Value;

/// Formats a float as Go's `%v` / `strconv.FormatFloat(f, 'g', -1, 64)`.
pub fn fmt_float_v(f: f64) -> String {
    fmt_g(f, None, false)
}

fn special(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        })
    } else {
        None
    }
}

/// Shortest (or `prec`-digit) decimal digits and exponent: value = 0.d1d2... * 10^dp.
fn digits(f: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        None => format!("{:e}", f.abs()),
        Some(p) => sci(f.abs(), p.saturating_sub(1)),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| *c != '.').collect();
    if prec.is_none() {
        while d.len() > 1 && d.ends_with('0') {
            d.pop();
        }
    }
    (d, exp + 1)
}

fn fmt_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    let neg = f.is_sign_negative();
    let sign = if neg { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0");
    }
    let prec = prec.map(|p| p.max(1));
    let (mut d, dp) = digits(f, prec);
    let mut eprec = prec.unwrap_or(6) as i32;
    if let Some(p) = prec {
        // %g with precision drops trailing zeros.
        while d.len() > 1 && d.ends_with('0') {
            d.pop();
        }
        let nd = d.len() as i32;
        if (p as i32) > nd && nd >= dp {
            eprec = nd;
        }
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let mut m = String::new();
        m.push_str(&d[..1]);
        if d.len() > 1 {
            m.push('.');
            m.push_str(&d[1..]);
        }
        let e = if upper { 'E' } else { 'e' };
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}{e}{es}{:02}", exp.abs());
    }
    // Fixed notation.
    let mut s = String::from(sign);
    if dp <= 0 {
        s.push_str("0.");
        for _ in 0..(-dp) {
            s.push('0');
        }
        s.push_str(&d);
    } else if (dp as usize) >= d.len() {
        s.push_str(&d);
        for _ in 0..(dp as usize - d.len()) {
            s.push('0');
        }
    } else {
        s.push_str(&d[..dp as usize]);
        s.push('.');
        s.push_str(&d[dp as usize..]);
    }
    s
}

fn fmt_e(f: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    let s = sci(f, prec);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let es = if e < 0 { '-' } else { '+' };
    let ec = if upper { 'E' } else { 'e' };
    format!("{m}{ec}{es}{:02}", e.abs())
}

/// `fmt.Sprint` of one value (`%v`).
pub fn sprint_one(v: &Value) -> String {
    let mut s = String::new();
    write_v(&mut s, v);
    s
}

fn write_v(out: &mut String, v: &Value) {
    write_v_at(out, v, 0);
}

/// `%v` at nesting `d`: stops at the depth and byte limits of the budget.
fn write_v_at(out: &mut String, v: &Value, d: usize) {
    if v.is_container() && !crate::budget::room(out.len()) {
        return;
    }
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::I64(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&fmt_float_v(*f)),
        Value::Str(s) => out.push_str(s),
        Value::Bytes(b) => {
            out.push('[');
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&x.to_string());
            }
            out.push(']');
        }
        Value::List(l) => {
            out.push('[');
            crate::budget::deeper(d, || {
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    write_v_at(out, x, d + 1);
                }
            });
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            crate::budget::deeper(d, || {
                for (i, (k, x)) in m.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    write_v_at(out, x, d + 1);
                }
            });
            out.push(']');
        }
        Value::Object(o) => out.push_str(&o.to_text()),
    }
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            s.push(' ');
        }
        write_v(&mut s, a);
    }
    s
}

/// `fmt.Sprintln(args...)`.
pub fn sprintln(args: &[Value]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        write_v(&mut s, a);
    }
    s.push('\n');
    s
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{fffd}' => out.push_str("\\ufffd"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Largest width or precision honoured by `sprintf`.
const MAX_PAD: usize = 1 << 20;

/// The largest precision Rust's formatter takes (above it, it panics). An f64 has no
/// non-zero decimal digit that far out, so larger precisions are the same digits padded
/// with zeros (a fuzz crash: `printf "%.23000000000f"`).
const MAX_FMT_PREC: usize = u16::MAX as usize;

/// `f` with `p` digits after the point (Go's `%.pf`), for any `p`.
fn fixed(f: f64, p: usize) -> String {
    let mut s = format!("{:.*}", p.min(MAX_FMT_PREC), f);
    s.extend(std::iter::repeat_n('0', p.saturating_sub(MAX_FMT_PREC)));
    s
}

/// `f` in Rust's exponent form with `p` mantissa digits after the point, for any `p`.
fn sci(f: f64, p: usize) -> String {
    // The exponent form counts the digit before the point too: one less.
    let max = MAX_FMT_PREC - 1;
    let s = format!("{:.*e}", p.min(max), f);
    let extra = p.saturating_sub(max);
    match s.find('e') {
        Some(i) if extra > 0 => format!("{}{}{}", &s[..i], "0".repeat(extra), &s[i..]),
        _ => s,
    }
}

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, sp: &Spec) -> String {
    let Some(w) = sp.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if sp.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if sp.zero {
        // Zero padding goes after the sign.
        let (sign, rest) = if s.starts_with('-') || s.starts_with('+') {
            s.split_at(1)
        } else {
            ("", s.as_str())
        };
        format!("{sign}{}{rest}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Nil => format!("%!{verb}(<nil>)"),
        other => format!("%!{verb}({}={})", other.type_name(), sprint_one(other)),
    }
}

fn fmt_int(i: i64, verb: char, sp: &Spec) -> String {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut body = match verb {
        'd' | 'v' => u.to_string(),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        'o' => format!("{u:o}"),
        'O' => format!("0o{u:o}"),
        'b' => format!("{u:b}"),
        _ => u.to_string(),
    };
    if let Some(p) = sp.prec {
        while body.len() < p {
            body.insert(0, '0');
        }
    }
    if sp.sharp {
        match verb {
            'x' => body.insert_str(0, "0x"),
            'X' => body.insert_str(0, "0X"),
            'o' if !body.starts_with('0') => body.insert(0, '0'),
            _ => {}
        }
    }
    if neg {
        body.insert(0, '-');
    } else if sp.plus {
        body.insert(0, '+');
    } else if sp.space {
        body.insert(0, ' ');
    }
    body
}

fn fmt_value(v: &Value, verb: char, sp: &Spec) -> String {
    fmt_value_at(v, verb, sp, 0)
}

/// One operand at nesting `d` (lists and maps recurse, within the budget).
fn fmt_value_at(v: &Value, verb: char, sp: &Spec, d: usize) -> String {
    let s = match (verb, v) {
        ('v', Value::Float(f)) => {
            let mut s = fmt_g(*f, sp.prec, false);
            if sp.plus && !s.starts_with('-') {
                s.insert(0, '+');
            }
            s
        }
        ('v', Value::Int(i) | Value::I64(i)) => fmt_int(*i, 'd', sp),
        ('v', Value::Str(s)) => trunc_prec(s, sp),
        ('v', other) => {
            let mut s = String::new();
            write_v(&mut s, other);
            s
        }
        ('T', other) => match other {
            Value::Nil => "<nil>".into(),
            o => o.type_name(),
        },
        ('s', Value::Str(s)) => trunc_prec(s, sp),
        ('s', Value::Bytes(b)) => trunc_prec(&String::from_utf8_lossy(b), sp),
        ('q', Value::Str(s)) => go_quote(s),
        ('q', Value::Int(i) | Value::I64(i)) => {
            let c = char::from_u32(*i as u32).unwrap_or('\u{fffd}');
            format!("'{c}'")
        }
        ('x' | 'X', Value::Str(s)) => {
            let h = hex::encode(s.as_bytes());
            if verb == 'X' { h.to_uppercase() } else { h }
        }
        ('x' | 'X', Value::Bytes(b)) => {
            let h = hex::encode(b);
            if verb == 'X' { h.to_uppercase() } else { h }
        }
        ('d' | 'x' | 'X' | 'o' | 'O' | 'b', Value::Int(i) | Value::I64(i)) => fmt_int(*i, verb, sp),
        ('c', Value::Int(i) | Value::I64(i)) => {
            char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string()
        }
        ('U', Value::Int(i) | Value::I64(i)) => format!("U+{:04X}", i),
        ('t', Value::Bool(b)) => b.to_string(),
        ('f' | 'F', Value::Float(f)) => {
            let p = sp.prec.unwrap_or(6);
            let mut s = match special(*f) {
                Some(s) => s,
                None => fixed(*f, p),
            };
            if sp.plus && !s.starts_with('-') {
                s.insert(0, '+');
            }
            s
        }
        ('e' | 'E', Value::Float(f)) => fmt_e(*f, sp.prec.unwrap_or(6), verb == 'E'),
        ('g' | 'G', Value::Float(f)) => fmt_g(*f, sp.prec, verb == 'G'),
        ('x' | 'X', Value::Float(f)) => bad_verb(verb, &Value::Float(*f)),
        ('s' | 'd' | 'q' | 'x' | 'X', Value::List(l)) => {
            let mut s = String::from("[");
            crate::budget::deeper(d, || {
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    if !crate::budget::room(s.len()) {
                        break;
                    }
                    s.push_str(&fmt_value_at(x, verb, &Spec::default(), d + 1));
                }
            });
            s.push(']');
            s
        }
        ('s' | 'd' | 'q', Value::Map(m)) => {
            let mut s = String::from("map[");
            crate::budget::deeper(d, || {
                for (i, (k, x)) in m.borrow().iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    if !crate::budget::room(s.len()) {
                        break;
                    }
                    s.push_str(&fmt_value(&Value::str(k.as_str()), verb, &Spec::default()));
                    s.push(':');
                    s.push_str(&fmt_value_at(x, verb, &Spec::default(), d + 1));
                }
            });
            s.push(']');
            s
        }
        ('s' | 'q', Value::Object(o)) => {
            let t = o.to_text();
            if verb == 'q' { go_quote(&t) } else { t }
        }
        (_, other) => bad_verb(verb, other),
    };
    pad(s, sp)
}

fn trunc_prec(s: &str, sp: &Spec) -> String {
    match sp.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

/// `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut argi = 0usize;
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut sp = Spec::default();
        while i < chars.len() {
            match chars[i] {
                '-' => sp.minus = true,
                '+' => sp.plus = true,
                '#' => sp.sharp = true,
                ' ' => sp.space = true,
                '0' => sp.zero = true,
                _ => break,
            }
            i += 1;
        }
        // Width.
        if i < chars.len() && chars[i] == '*' {
            i += 1;
            if let Some(Value::Int(w) | Value::I64(w)) = args.get(argi) {
                sp.width = Some((*w).unsigned_abs() as usize);
                if *w < 0 {
                    sp.minus = true;
                }
            }
            argi += 1;
        } else {
            let st = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i > st {
                sp.width = chars[st..i].iter().collect::<String>().parse().ok();
            }
        }
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            if i < chars.len() && chars[i] == '*' {
                i += 1;
                if let Some(Value::Int(p) | Value::I64(p)) = args.get(argi) {
                    sp.prec = Some((*p).max(0) as usize);
                }
                argi += 1;
            } else {
                let st = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                sp.prec = Some(chars[st..i].iter().collect::<String>().parse().unwrap_or(0));
            }
        }
        if sp.minus {
            sp.zero = false;
        }
        // Absurd widths would allocate gigabytes before the output cap applies.
        sp.width = sp.width.map(|w| w.min(MAX_PAD));
        sp.prec = sp.prec.map(|p| p.min(MAX_PAD));
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(argi) {
            None => out.push_str(&format!("%!{verb}(MISSING)")),
            Some(v) => out.push_str(&fmt_value(v, verb, &sp)),
        }
        argi += 1;
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[argi..]
            .iter()
            .map(|v| match v {
                Value::Nil => "<nil>".to_string(),
                v => format!("{}={}", v.type_name(), sprint_one(v)),
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go() {
        assert_eq!(fmt_float_v(1000000.0), "1e+06");
        assert_eq!(fmt_float_v(100000.0), "100000");
        assert_eq!(fmt_float_v(8080.0), "8080");
        assert_eq!(fmt_float_v(1.5), "1.5");
        assert_eq!(fmt_float_v(0.0001), "0.0001");
        assert_eq!(fmt_float_v(0.00001), "1e-05");
        assert_eq!(fmt_float_v(123456789.0), "1.23456789e+08");
    }

    #[test]
    fn sprintf_verbs() {
        let a = |v: Vec<Value>| v;
        assert_eq!(sprintf("%s-%d", &a(vec!["x".into(), Value::Int(3)])), "x-3");
        assert_eq!(sprintf("%d", &a(vec!["x".into()])), "%!d(string=x)");
        assert_eq!(sprintf("%s", &a(vec![])), "%!s(MISSING)");
        assert_eq!(sprintf("%q", &a(vec!["a\"b".into()])), "\"a\\\"b\"");
        assert_eq!(sprintf("%.2f", &a(vec![Value::Float(1.005)])), "1.00");
        assert_eq!(sprintf("%05d", &a(vec![Value::Int(-42)])), "-0042");
        assert_eq!(sprintf("%v", &a(vec![Value::Nil])), "<nil>");
        assert_eq!(sprintf("%s", &a(vec![Value::Nil])), "%!s(<nil>)");
        assert_eq!(sprintf("x", &a(vec![Value::Int(1)])), "x%!(EXTRA int=1)");
    }

    #[test]
    fn precisions_past_rusts_formatter_limit_pad_with_zeros() {
        // A fuzz crash: Rust's formatter panics above a precision of 65,535.
        let v = vec![Value::Float(1.5)];
        let f = sprintf("%.23000000000f", &v);
        assert_eq!(f.len(), 2 + MAX_PAD);
        assert!(f.starts_with("1.5000") && f.ends_with('0'));
        let e = sprintf("%.70000e", &v);
        assert!(
            e.starts_with("1.5000") && e.ends_with("e+00"),
            "{}",
            &e[e.len() - 8..]
        );
        assert_eq!(e.len(), "1.".len() + 70_000 + "e+00".len());
        assert!(sprintf("%.70000g", &v).starts_with("1.5"));
        assert_eq!(fixed(0.25, 3), "0.250");
    }
}
