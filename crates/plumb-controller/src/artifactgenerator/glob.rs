//! Glob patterns of copy operations (`@alias/<glob>`) and excludes, as doublestar reads
//! them: `*` and `?` stay within a path segment, `**` spans segments, `[...]` is a class,
//! `{a,b}` an alternation, `\` escapes. Compiled to an anchored regular expression.

/// Most alternatives in `{}` groups, as Flux bounds them.
const MAX_ALTERNATIVES: usize = 20;

/// Whether `s` has glob metacharacters (a literal path otherwise).
pub(super) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{'])
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub(super) struct Glob(regex::Regex);

impl Glob {
    /// Compiles `pattern`; an error names what is wrong with it.
    pub(super) fn new(pattern: &str) -> Result<Glob, String> {
        let commas = pattern.matches(',').count();
        if commas > MAX_ALTERNATIVES {
            return Err(format!(
                "pattern has {commas} alternatives, at most {MAX_ALTERNATIVES} are allowed"
            ));
        }
        let mut re = String::from("^");
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        let mut depth = 0usize;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    let at_start = i == 0 || chars[i - 1] == '/';
                    i += 1;
                    if at_start && chars.get(i + 1) == Some(&'/') {
                        i += 1;
                        re.push_str("(?:[^/]*(?:/[^/]*)*/)?");
                    } else {
                        re.push_str(".*");
                    }
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => i = class(&chars, i, &mut re)?,
                '{' => {
                    depth += 1;
                    re.push_str("(?:");
                }
                '}' if depth > 0 => {
                    depth -= 1;
                    re.push(')');
                }
                ',' if depth > 0 => re.push('|'),
                '\\' => {
                    i += 1;
                    let Some(n) = chars.get(i) else {
                        return Err("pattern ends with an escape".to_string());
                    };
                    re.push_str(&regex::escape(&n.to_string()));
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
            i += 1;
        }
        if depth > 0 {
            return Err("unclosed '{' in pattern".to_string());
        }
        re.push('$');
        regex::Regex::new(&re)
            .map(Glob)
            .map_err(|e| format!("invalid pattern: {e}"))
    }

    /// Whether the slash-separated relative path `path` matches.
    pub(super) fn matches(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// Translates the class starting at `chars[start]` (`[`); returns the index of its `]`.
fn class(chars: &[char], start: usize, re: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    let mut out = String::from("[");
    if matches!(chars.get(i), Some('!' | '^')) {
        out.push('^');
        i += 1;
    }
    let first = i;
    while i < chars.len() && (chars[i] != ']' || i == first) {
        let c = chars[i];
        if c == '\\' {
            i += 1;
        }
        let Some(c) = chars.get(i) else { break };
        if matches!(c, '[' | ']' | '\\' | '&' | '~' | '^') {
            out.push('\\');
        }
        out.push(*c);
        i += 1;
    }
    if i >= chars.len() {
        return Err("unclosed '[' in pattern".to_string());
    }
    // Never across a separator, as doublestar.
    out.push_str("&&[^/]]");
    re.push_str(&out);
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().matches(s)
    }

    #[test]
    fn segments_stars_and_classes() {
        assert!(m("*.yaml", "a.yaml"));
        assert!(!m("*.yaml", "d/a.yaml"));
        assert!(m("apps/**", "apps/a/b.yaml"));
        assert!(m("apps/**/*.yaml", "apps/b.yaml"));
        assert!(m("apps/**/*.yaml", "apps/x/y/b.yaml"));
        assert!(!m("apps/**/*.yaml", "other/b.yaml"));
        assert!(m("**/*.md", "README.md"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "ax"));
        assert!(m("{dev,prod}/*.yaml", "prod/k.yaml"));
        assert!(!m("{dev,prod}/*.yaml", "qa/k.yaml"));
        assert!(m(r"a\*", "a*"));
        assert!(m("a.b", "a.b") && !m("a.b", "axb"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Glob::new("[ab").is_err());
        assert!(Glob::new("{a,b").is_err());
        assert!(Glob::new(&format!("{{{}}}", vec!["a"; 30].join(","))).is_err());
        assert!(is_glob("a/*") && !is_glob("a/b.yaml"));
    }
}
