//! Go text/template semantics, checked against outputs of Go/Helm.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use plumb_helm::template::render_str;
use plumb_helm::{Value, encode};

fn data(yaml: &str) -> Value {
    encode::yaml_to_value(yaml).unwrap()
}

fn r(src: &str, d: &str) -> String {
    render_str("t", src, data(d)).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str, d: &str) -> String {
    render_str("t", src, data(d)).unwrap_err()
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(r("a  {{- 1 -}}  b", ""), "a1b");
    assert_eq!(r("a {{/* c */}} b", ""), "a  b");
    assert_eq!(r("a\n{{- /* c */ -}}\nb", ""), "ab");
    assert_eq!(r("{{-3}}", ""), "-3");
}

#[test]
fn missing_values_and_nil() {
    assert_eq!(r("{{ .a }}", "b: 1"), "<no value>");
    assert_eq!(r("{{ printf \"%v\" .a }}", "b: 1"), "<nil>");
    assert_eq!(r("{{ (.a).b }}", "b: 1"), "<no value>");
    assert_eq!(
        err("{{ .a.b }}", "b: 1"),
        "template: t:1:5: executing \"t\" at <.a.b>: nil pointer evaluating interface {}.b"
    );
    assert_eq!(r("{{ $x := .a }}{{ $x.b }}", "b: 1"), "<no value>");
}

#[test]
fn numbers_print_like_go() {
    assert_eq!(r("{{ .num }}", "num: 1000000"), "1e+06");
    assert_eq!(r("{{ .num }}", "num: 8080"), "8080");
    assert_eq!(r("{{ .num | int }}", "num: 1000000"), "1000000");
    assert_eq!(
        r(
            "{{ typeOf .num }}|{{ typeOf 1 }}|{{ typeOf (add 1 2) }}",
            "num: 1"
        ),
        "float64|int|int64"
    );
    assert_eq!(
        r("{{ 1.5 }}|{{ 0x10 }}|{{ 'a' }}|{{ 1e3 }}", ""),
        "1.5|16|97|1000"
    );
}

#[test]
fn control_flow() {
    assert_eq!(
        r(
            "{{ if .a }}x{{ else if .b }}y{{ else }}z{{ end }}",
            "b: true"
        ),
        "y"
    );
    assert_eq!(
        r(
            "{{ with .a }}{{ . }}{{ else with .b }}{{ . }}{{ end }}",
            "b: 2"
        ),
        "2"
    );
    assert_eq!(
        r(
            "{{ range $k, $v := . }}{{ $k }}{{ $v }}{{ end }}",
            "b: 2\na: 1"
        ),
        "a1b2"
    );
    assert_eq!(
        r("{{ range . }}{{ if eq . 2.0 }}{{ continue }}{{ end }}{{ if eq . 4.0 }}{{ break }}{{ end }}{{ . }}{{ end }}", "[1, 2, 3, 4, 5]")
            .replace(' ', ""),
        "13"
    );
    assert!(err("{{ range 3 }}{{ end }}", "").contains("range can't iterate over 3"));
    assert_eq!(r("{{ range .x }}a{{ else }}none{{ end }}", "{}"), "none");
}

#[test]
fn variables_scope_and_assignment() {
    assert_eq!(
        r(
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}",
            ""
        ),
        "2"
    );
    assert!(err("{{ if true }}{{ $y := 3 }}{{ end }}{{ $y }}", "").contains("undefined variable"));
    assert_eq!(
        r("{{ range $i, $e := . }}{{ $i }}{{ $e }}{{ end }}", "[a, b]"),
        "0a1b"
    );
    assert_eq!(r("{{ range $e := . }}{{ $e }}{{ end }}", "[a, b]"), "ab");
    assert_eq!(r("{{ with $x := 5 }}{{ $x }}{{ end }}", ""), "5");
}

#[test]
fn and_or_short_circuit() {
    assert_eq!(r("{{ and 1 0 2 }}|{{ or 0 \"\" \"x\" }}", ""), "0|x");
    // The second operand would fail if evaluated.
    assert_eq!(r("{{ and .a .a.b }}", "{}"), "<no value>");
    assert_eq!(r("{{ or 1 .a.b }}", "{}"), "1");
}

#[test]
fn comparisons_follow_go() {
    assert_eq!(
        r("{{ eq 1 1 2 }}|{{ eq \"a\" \"b\" }}|{{ eq .x nil }}", ""),
        "true|false|true"
    );
    assert!(err("{{ eq .num 1 }}", "num: 1").contains("incompatible types for comparison"));
    assert!(err("{{ lt \"a\" 1 }}", "").contains("incompatible types"));
}

#[test]
fn define_template_block() {
    assert_eq!(
        r(
            "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" 1 }}",
            ""
        ),
        "[1]"
    );
    assert_eq!(r("{{ block \"b\" 2 }}<{{ . }}>{{ end }}", ""), "<2>");
    assert_eq!(
        r(
            "{{ define \"x\" }}{{ . }}{{ end }}{{ include \"x\" 3 | quote }}",
            ""
        ),
        "\"3\""
    );
    assert!(err("{{ template \"nope\" }}", "").contains("template \"nope\" not defined"));
}

#[test]
fn include_recursion_is_bounded() {
    let e = err(
        "{{ define \"r\" }}{{ include \"r\" . }}{{ end }}{{ include \"r\" . }}",
        "",
    );
    assert!(e.contains("exceeded maximum template depth"), "{e}");
}

#[test]
fn tpl_sees_its_data_and_defines() {
    assert_eq!(r("{{ tpl \"{{ .a }}-x\" . }}", "a: 1"), "1-x");
    assert_eq!(
        r(
            "{{ tpl \"{{ define \\\"q\\\" }}Q{{ end }}{{ include \\\"q\\\" . }}\" . }}",
            ""
        ),
        "Q"
    );
}

#[test]
fn parse_errors_are_reported() {
    assert!(err("{{ nosuchfunc 1 }}", "").contains("function \"nosuchfunc\" not defined"));
    assert!(err("{{ if 1 }}", "").contains("unexpected EOF"));
    assert!(err("{{ end }}", "").contains("unexpected"));
    assert!(err("{{ \"unterminated }}", "").contains("unterminated"));
    assert!(err("{{ break }}", "").contains("outside"));
}

#[test]
fn printf_verbs() {
    assert_eq!(
        r(
            "{{ printf \"%s|%d|%q|%t|%x|%X|%o|%5d|%-5s|%05d|%T|%T|%v\" \"s\" 42 \"q\\\"\" true 255 255 8 7 \"ab\" 42 .p (list 1) (dict \"a\" 1) }}",
            "p: 1"
        ),
        "s|42|\"q\\\"\"|true|ff|FF|10|    7|ab   |00042|float64|[]interface {}|map[a:1]"
    );
    assert_eq!(
        r("{{ printf \"%d %s %d\" \"str\" 3 }}", ""),
        "%!d(string=str) %!s(int=3) %!d(MISSING)"
    );
    assert_eq!(
        r("{{ printf \"%.2f|%v|%5.1f|%e\" .r .r .r .r }}", "r: 0.25"),
        "0.25|0.25|  0.2|2.500000e-01"
    );
}

#[test]
fn sprig_mutation_is_shared() {
    assert_eq!(
        r("{{ $d := dict }}{{ $_ := set $d \"a\" 1 }}{{ $d.a }}", ""),
        "1"
    );
    assert_eq!(r("{{ $_ := set .m \"k\" \"v\" }}{{ .m.k }}", "m: {}"), "v");
    assert_eq!(
        r(
            "{{ merge (dict \"a\" 9 \"n\" 1) (dict \"a\" 1 \"b\" 2) | toJson }}",
            ""
        ),
        r#"{"a":9,"b":2,"n":1}"#
    );
    assert_eq!(
        r(
            "{{ mergeOverwrite (dict \"a\" 9) (dict \"a\" 1) | toJson }}",
            ""
        ),
        r#"{"a":1}"#
    );
}

#[test]
fn to_yaml_matches_go_yaml() {
    let y = r(
        "{{ toYaml . }}",
        "s: 'true'\nq: '1.0'\ne: ''\nv: 6.3.4\nc: 'a: b'\nh: '#x'\nt: '2024-01-02'\nm: \"x\\ny\"\nl: []\no: {}\nz: null\nlist: [a, {b: 1, c: [2]}]",
    );
    assert_eq!(
        y,
        "c: 'a: b'\ne: \"\"\nh: '#x'\nl: []\nlist:\n- a\n- b: 1\n  c:\n  - 2\nm: |-\n  x\n  y\no: {}\nq: \"1.0\"\ns: \"true\"\nt: \"2024-01-02\"\nv: 6.3.4\nz: null"
    );
    let long = "word ".repeat(30);
    let y = r("{{ toYaml . }}", &format!("k: \"{}\"", long.trim()));
    assert!(
        y.contains("\n  word"),
        "long plain scalars fold at 80 columns: {y}"
    );
}
