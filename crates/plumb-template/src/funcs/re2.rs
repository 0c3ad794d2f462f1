//! Go's RE2 syntax (`regexp/syntax` with Perl flags) rewritten for the
//! `regex` crate, so Sprig's regex functions accept and match what Go does.
//!
//! The differences that matter in charts:
//! - `\w`, `\d`, `\s` (and `\b`'s word set) are ASCII in Go, Unicode in `regex`;
//! - in a class, `-` next to a class escape is a literal in Go (`[\w-\.]`),
//!   an error in `regex`; `[` is a literal in Go, a nested class in `regex`;
//!   `&&`, `--` and `~~` are set operations in `regex` only;
//! - `{` that does not start a repetition is a literal in Go (`a{`, `{x}`);
//! - `\Q...\E` quoting and octal escapes (`\101`) exist in Go only.

const WORD: &str = "0-9A-Za-z_";
const DIGIT: &str = "0-9";
const SPACE: &str = r"\t\n\f\r ";

/// Rewrites a Go regular expression into `regex` crate syntax. Invalid Go
/// syntax is passed through, so the `regex` crate reports it.
pub fn to_rust(go: &str) -> String {
    let c: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => i = escape(&c, i, &mut out, false),
            '[' => i = class(&c, i, &mut out),
            '{' => {
                let end = repetition_end(&c, i);
                match end {
                    Some(e) => out.extend(&c[i..e]),
                    None => out.push_str(r"\{"),
                }
                i = end.unwrap_or(i + 1);
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// The end of a `{n}`, `{n,}` or `{n,m}` repetition starting at `i`.
fn repetition_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let s = *j;
        while *j < c.len() && c[*j].is_ascii_digit() {
            *j += 1;
        }
        *j > s
    };
    if !digits(&mut j) {
        return None;
    }
    if c.get(j) == Some(&',') {
        j += 1;
        digits(&mut j);
    }
    (c.get(j) == Some(&'}')).then_some(j + 1)
}

/// Copies the escape at `i` (outside a class, or inside when `in_class`);
/// returns the index after it.
fn escape(c: &[char], i: usize, out: &mut String, in_class: bool) -> usize {
    let Some(&e) = c.get(i + 1) else {
        out.push('\\');
        return i + 1;
    };
    let set = |neg: bool, body: &str, out: &mut String| {
        if in_class && !neg {
            out.push_str(body);
        } else {
            out.push_str(if neg { "[^" } else { "[" });
            out.push_str(body);
            out.push(']');
        }
    };
    match e {
        'w' | 'W' => set(e == 'W', WORD, out),
        'd' | 'D' => set(e == 'D', DIGIT, out),
        's' | 'S' => set(e == 'S', SPACE, out),
        'Q' if !in_class => {
            let rest: String = c[i + 2..].iter().collect();
            let (lit, consumed) = match rest.find(r"\E") {
                Some(p) => (&rest[..p], p + 2),
                None => (rest.as_str(), rest.len()),
            };
            out.push_str(&regex_escape(lit));
            return i + 2 + rest[..consumed].chars().count();
        }
        '0'..='7' => {
            let mut j = i + 1;
            let mut v = 0u32;
            while j < c.len() && j < i + 4 && c[j].is_digit(8) {
                v = v * 8 + c[j].to_digit(8).unwrap_or(0);
                j += 1;
            }
            out.push_str(&format!(r"\x{{{v:x}}}"));
            return j;
        }
        _ => {
            out.push('\\');
            out.push(e);
        }
    }
    i + 2
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Whether the class item at `i` is a class of its own (`\w`, `[:alpha:]`,
/// `\pL`), which cannot be a range end.
fn is_set_item(c: &[char], i: usize) -> bool {
    match (c.get(i), c.get(i + 1)) {
        (Some('\\'), Some(e)) => "wWdDsSpP".contains(*e),
        (Some('['), Some(':')) => true,
        _ => false,
    }
}

/// Copies the class starting at `i` (`[`); returns the index after its `]`.
fn class(c: &[char], i: usize, out: &mut String) -> usize {
    let mut j = i + 1;
    out.push('[');
    if c.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    // A `]` first is a literal.
    if c.get(j) == Some(&']') {
        out.push_str(r"\]");
        j += 1;
    }
    let mut prev_set = false;
    while j < c.len() && c[j] != ']' {
        let ch = c[j];
        if ch == '['
            && c.get(j + 1) == Some(&':')
            && let Some(end) =
                (j + 2..c.len().saturating_sub(1)).find(|&k| c[k] == ':' && c[k + 1] == ']')
        {
            out.extend(&c[j..end + 2]);
            j = end + 2;
            prev_set = true;
            continue;
        }
        match ch {
            '\\' => {
                let set = is_set_item(c, j);
                j = escape(c, j, out, true);
                prev_set = set;
                continue;
            }
            '-' => {
                let first = out.ends_with('[') || out.ends_with("[^");
                let last = c.get(j + 1) == Some(&']');
                let dash_dash = c.get(j + 1) == Some(&'-') || out.ends_with('-');
                if first || last || prev_set || is_set_item(c, j + 1) || dash_dash {
                    out.push_str(r"\-");
                } else {
                    out.push('-');
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
        prev_set = false;
        j += 1;
    }
    if j < c.len() {
        out.push(']');
        j + 1
    } else {
        // Unclosed: let the regex crate report it.
        j
    }
}

#[cfg(test)]
mod tests {
    use super::to_rust;

    fn go_match(re: &str, s: &str) -> bool {
        regex::Regex::new(&to_rust(re)).unwrap().is_match(s)
    }

    #[test]
    fn dash_after_class_escape_is_literal() {
        assert!(go_match(r"^[\w-\.]+$", "my-chart.v1"));
        assert!(!go_match(r"^[\w-\.]+$", "a b"));
        assert!(go_match(r"^[a-z\d-]+$", "a-1"));
        assert!(go_match(r"^[-a]+$", "-a"));
    }

    #[test]
    fn ascii_classes_literal_braces_and_quotes() {
        assert!(!go_match(r"^\w+$", "é"));
        assert!(!go_match(r"^\d$", "٣"));
        assert!(go_match(r"^a{$", "a{"));
        assert!(go_match(r"^\${x}$", "${x}"));
        assert!(go_match(r"^x{2}$", "xx"));
        assert!(go_match(r"^\Q.*\E$", ".*"));
        assert!(go_match(r"^\101$", "A"));
        assert!(go_match(r"^[[]$", "["));
        assert!(go_match(r"^[a&&b]+$", "&&"));
        assert!(go_match(r"^[[:alpha:]-]+$", "ab-"));
    }
}
