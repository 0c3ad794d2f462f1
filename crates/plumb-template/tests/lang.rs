//! The template language alone (no Helm): Go's literal grammar, pipelines,
//! RE2 regexes, float printing, and the render budgets.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use plumb_template::budget::Limits;
use plumb_template::{Value, render_str};

fn r(src: &str) -> String {
    render_str("t", src, Value::empty_map()).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str) -> String {
    render_str("t", src, Value::empty_map())
        .unwrap_err()
        .to_string()
}

#[test]
fn number_literals_follow_go() {
    // Hex floats are float64; integral-valued floats print without a fraction.
    assert_eq!(r("{{ 0x1p60 }}"), "1.152921504606847e+18");
    assert_eq!(r("{{ 0x1p-2 }}|{{ 0x1.8p1 }}|{{ 0X_1P4 }}"), "0.25|3|16");
    assert_eq!(r("{{ typeOf 0x1p4 }}|{{ typeOf 0x1F }}"), "float64|int");
    assert_eq!(
        r("{{ 0o17 }}|{{ 017 }}|{{ 0b101 }}|{{ 1_000 }}|{{ 0x_FF }}"),
        "15|15|5|1000|255"
    );
    assert_eq!(
        r("{{ .5 }}|{{ 1. }}|{{ 1e3 }}|{{ -2.5e-3 }}|{{ +7 }}"),
        "0.5|1|1000|-0.0025|7"
    );
    assert_eq!(
        r(r"{{ '\x41' }}|{{ '\u00e9' }}|{{ '\101' }}|{{ '\n' }}"),
        "65|233|65|10"
    );
    assert!(err("{{ 1__0 }}").contains("illegal number syntax"));
    assert!(err("{{ 0x1.8 }}").contains("illegal number syntax"));
    assert!(err("{{ 1_ }}").contains("illegal number syntax"));
}

#[test]
fn floats_print_as_go() {
    assert_eq!(
        r("{{ 2e-08 }}|{{ 0.00001 }}|{{ 1e21 }}|{{ 123456789.0 }}"),
        "2e-08|1e-05|1e+21|1.23456789e+08"
    );
    // encoding/json trims a one-digit negative exponent: 2e-8, but 1e+21.
    assert_eq!(
        r("{{ toJson 2e-08 }}|{{ toJson 1e21 }}|{{ toJson 1.5e-10 }}"),
        "2e-8|1e+21|1.5e-10"
    );
}

#[test]
fn pipeline_may_end_with_a_pipe() {
    // Go's parser lets a command take its trailing `|`.
    assert_eq!(r(r#"{{ "a" | upper | }}"#), "A");
    assert_eq!(r(r#"{{ ("b" | upper |) }}"#), "B");
    assert_eq!(r(r#"{{ $x := "c" | }}{{ $x }}"#), "c");
    assert!(err(r#"{{ "a" | | upper }}"#).contains("empty command"));
    assert!(err(r#"{{ | upper }}"#).contains("t:1"));
}

#[test]
fn regex_functions_take_re2_syntax() {
    assert_eq!(r(r#"{{ regexMatch "^[\\w-\\.]+$" "my-app.v2" }}"#), "true");
    assert_eq!(r(r#"{{ regexMatch "^[\\w-\\.]+$" "my app" }}"#), "false");
    assert_eq!(r(r#"{{ regexReplaceAll "\\d" "é٣7" "n" }}"#), "é٣n");
    assert_eq!(r(r#"{{ regexFind "a{" "xa{" }}"#), "a{");
    assert_eq!(r(r#"{{ regexSplit "[[:space:]-]+" "a - b" -1 }}"#), "[a b]");
}

fn limits(ops: u64, bytes: u64, secs: u64) -> Limits {
    Limits {
        max_ops: ops,
        max_bytes: bytes,
        max_depth: 1000,
        timeout: Duration::from_secs(secs),
    }
}

#[test]
fn deep_values_drop_and_encode_without_overflowing() {
    // Builds a 200,000-deep chain: dropping it must not recurse, printing or
    // encoding it must stop at the depth limit with an error.
    let build = "{{$d := dict}}{{range until 200000}}{{$d = dict \"a\" $d}}{{end}}";
    assert_eq!(r(build), "");
    for tail in [
        "{{ toJson $d }}",
        "{{ $d }}",
        "{{ printf \"%s\" $d }}",
        "{{ deepCopy $d | len }}",
    ] {
        let e = err(&format!("{build}{tail}"));
        assert!(e.contains("nested deeper than 1000"), "{tail}: {e}");
    }
    // Cycles through `set` end the same way.
    let e = err("{{$m := dict}}{{$_ := set $m \"self\" $m}}{{ toJson $m }}");
    assert!(e.contains("nested deeper than"), "{e}");
}

#[test]
fn operation_budget_stops_long_loops() {
    let _g = limits(1_000_000, 1 << 30, 60).install();
    let t = Instant::now();
    let e = err("{{range until 100000}}{{range until 100000}}x{{end}}{{end}}");
    assert!(e.contains("more than 1000000 operations"), "{e}");
    assert!(e.contains("template: t"), "names the template: {e}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn memory_budget_stops_big_values_before_they_are_made() {
    let _g = limits(u64::MAX, 64 << 20, 60).install();
    let e = err("{{ $l := until 10000000 }}");
    assert!(e.contains("bytes of values"), "{e}");
    let e = err("{{ $s := \"x\" }}{{ range until 40 }}{{ $s = print $s $s }}{{ end }}");
    assert!(e.contains("bytes of values"), "{e}");
    let e =
        err("{{ $l := list 1 }}{{ range until 64 }}{{ $l = list $l $l }}{{ end }}{{ toJson $l }}");
    assert!(e.contains("render budget exceeded"), "{e}");
    let e = err("{{ replace \"\" (repeat 1000 \"y\") (repeat 100000 \"x\") }}");
    assert!(e.contains("bytes of values"), "{e}");
}

#[test]
fn deadline_stops_slow_functions() {
    let _g = limits(u64::MAX, u64::MAX, 1).install();
    let t = Instant::now();
    let e = err("{{ range until 1000 }}{{ $k := genPrivateKey \"rsa\" }}{{ end }}");
    assert!(e.contains("took longer than 1s"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn default_budget_is_armed_by_render_str() {
    // No explicit install: render_str arms the process default.
    let e = err("{{ range until 10000000 }}{{ range until 10000000 }}{{ end }}{{ end }}");
    assert!(e.contains("render budget exceeded"), "{e}");
}
