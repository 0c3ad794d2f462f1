//! Sprig's date functions with Go reference-time layouts (`2006-01-02`).

use rustc_hash::FxHashMap;
use std::rc::Rc;

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

use crate::funcs::{Func, arg, sarg, to_i64};
use crate::value::{Object, Value};

/// A Go `time.Time`.
#[derive(Debug)]
pub struct Time(pub DateTime<FixedOffset>);

impl Object for Time {
    fn type_name(&self) -> &str {
        "time.Time"
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let t = &self.0;
        Some(Ok(match name {
            "Year" => Value::Int(i64::from(t.year())),
            "Month" => Value::Int(i64::from(t.month())),
            "Day" => Value::Int(i64::from(t.day())),
            "Hour" => Value::Int(i64::from(t.hour())),
            "Minute" => Value::Int(i64::from(t.minute())),
            "Second" => Value::Int(i64::from(t.second())),
            "Unix" => Value::I64(t.timestamp()),
            "UTC" => Value::Object(Rc::new(Time(t.with_timezone(&Utc).fixed_offset()))),
            "Format" => match args.first() {
                Some(Value::Str(l)) => Value::str(go_format(t, l)),
                _ => return Some(Err("Format needs a layout".into())),
            },
            _ => return None,
        }))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn to_text(&self) -> String {
        let t = &self.0;
        let mut s = go_format(t, "2006-01-02 15:04:05.999999999 -0700 MST");
        if s.ends_with(" +0000 +0000") {
            s = s.replace(" +0000 +0000", " +0000 UTC");
        }
        s
    }
}

fn now() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}

fn to_time(v: &Value) -> Option<DateTime<FixedOffset>> {
    match v {
        Value::Object(o) => o.as_any().downcast_ref::<Time>().map(|t| t.0),
        Value::Int(i) | Value::I64(i) => DateTime::from_timestamp(*i, 0).map(|d| d.fixed_offset()),
        Value::Float(f) => DateTime::from_timestamp(*f as i64, 0).map(|d| d.fixed_offset()),
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats a time with a Go layout string.
pub fn go_format(t: &DateTime<FixedOffset>, layout: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    let b = layout.as_bytes();
    let off = t.offset().local_minus_utc();
    let zone = |colon: bool, z: bool| -> String {
        if z && off == 0 {
            return "Z".into();
        }
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        if colon {
            format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
        } else {
            format!("{sign}{:02}{:02}", a / 3600, (a % 3600) / 60)
        }
    };
    while i < b.len() {
        let rest = &layout[i..];
        let tok: Option<(usize, String)> = if rest.starts_with("2006") {
            Some((4, format!("{:04}", t.year())))
        } else if rest.starts_with("January") {
            Some((7, MONTHS[t.month0() as usize].to_string()))
        } else if rest.starts_with("Jan") {
            Some((3, MONTHS[t.month0() as usize][..3].to_string()))
        } else if rest.starts_with("Monday") {
            Some((
                6,
                DAYS[t.weekday().num_days_from_monday() as usize].to_string(),
            ))
        } else if rest.starts_with("Mon") {
            Some((
                3,
                DAYS[t.weekday().num_days_from_monday() as usize][..3].to_string(),
            ))
        } else if rest.starts_with("MST") {
            Some((
                3,
                if off == 0 {
                    "UTC".into()
                } else {
                    zone(false, false)
                },
            ))
        } else if rest.starts_with("Z07:00") {
            Some((6, zone(true, true)))
        } else if rest.starts_with("-07:00") {
            Some((6, zone(true, false)))
        } else if rest.starts_with("Z0700") {
            Some((5, zone(false, true)))
        } else if rest.starts_with("-0700") {
            Some((5, zone(false, false)))
        } else if rest.starts_with("01") {
            Some((2, format!("{:02}", t.month())))
        } else if rest.starts_with("02") {
            Some((2, format!("{:02}", t.day())))
        } else if rest.starts_with("_2") {
            Some((2, format!("{:>2}", t.day())))
        } else if rest.starts_with("06") {
            Some((2, format!("{:02}", t.year() % 100)))
        } else if rest.starts_with("15") {
            Some((2, format!("{:02}", t.hour())))
        } else if rest.starts_with("03") {
            Some((2, format!("{:02}", (t.hour() + 11) % 12 + 1)))
        } else if rest.starts_with("04") {
            Some((2, format!("{:02}", t.minute())))
        } else if rest.starts_with("05") {
            Some((2, format!("{:02}", t.second())))
        } else if rest.starts_with("PM") {
            Some((
                2,
                if t.hour() >= 12 {
                    "PM".into()
                } else {
                    "AM".into()
                },
            ))
        } else if rest.starts_with("pm") {
            Some((
                2,
                if t.hour() >= 12 {
                    "pm".into()
                } else {
                    "am".into()
                },
            ))
        } else if rest.starts_with(".000")
            || rest.starts_with(".999")
            || rest.starts_with(",000")
            || rest.starts_with(",999")
        {
            let ch = rest.as_bytes()[1];
            let n = rest[1..].bytes().take_while(|c| *c == ch).count();
            let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
            let mut d = nanos[..n.min(9)].to_string();
            if ch == b'9' {
                d = d.trim_end_matches('0').to_string();
                if d.is_empty() {
                    Some((n + 1, String::new()))
                } else {
                    Some((n + 1, format!(".{d}")))
                }
            } else {
                Some((n + 1, format!(".{d}")))
            }
        } else if rest.starts_with('1') {
            Some((1, t.month().to_string()))
        } else if rest.starts_with('2') {
            Some((1, t.day().to_string()))
        } else if rest.starts_with('3') {
            Some((1, ((t.hour() + 11) % 12 + 1).to_string()))
        } else if rest.starts_with('4') {
            Some((1, t.minute().to_string()))
        } else if rest.starts_with('5') {
            Some((1, t.second().to_string()))
        } else {
            None
        };
        match tok {
            Some((n, s)) => {
                out.push_str(&s);
                i += n;
            }
            None => {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn time_value(t: DateTime<FixedOffset>) -> Value {
    Value::Object(Rc::new(Time(t)))
}

/// Go `time.Duration` string.
fn duration_string(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let neg = secs < 0;
    let mut s = secs.unsigned_abs();
    let h = s / 3600;
    s %= 3600;
    let m = s / 60;
    s %= 60;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if h > 0 {
        out.push_str(&format!("{h}h{m}m{s}s"));
    } else if m > 0 {
        out.push_str(&format!("{m}m{s}s"));
    } else {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn time_of(v: &Value) -> DateTime<FixedOffset> {
    to_time(v).unwrap_or_else(now)
}

pub(crate) fn register(m: &mut FxHashMap<&'static str, Func>) {
    m.insert("now", |_| Ok(time_value(now())));
    m.insert("date", |a| {
        let l = sarg(a, 0)?;
        Ok(Value::str(go_format(&time_of(&arg(a, 1)), &l)))
    });
    m.insert("dateInZone", |a| {
        let l = sarg(a, 0)?;
        Ok(Value::str(go_format(&time_of(&arg(a, 1)), &l)))
    });
    m.insert("htmlDate", |a| {
        Ok(Value::str(go_format(&time_of(&arg(a, 0)), "2006-01-02")))
    });
    m.insert("htmlDateInZone", |a| {
        Ok(Value::str(go_format(&time_of(&arg(a, 0)), "2006-01-02")))
    });
    m.insert("unixEpoch", |a| {
        Ok(Value::str(time_of(&arg(a, 0)).timestamp().to_string()))
    });
    m.insert("ago", |a| {
        let t = time_of(&arg(a, 0));
        Ok(Value::str(duration_string((now() - t).num_seconds())))
    });
    m.insert("duration", |a| {
        Ok(Value::str(duration_string(to_i64(&arg(a, 0)))))
    });
    m.insert("toDate", |a| {
        let l = sarg(a, 0)?;
        let s = sarg(a, 1)?;
        Ok(parse_layout(&l, &s).map_or(Value::Nil, time_value))
    });
    m.insert("mustToDate", |a| {
        let l = sarg(a, 0)?;
        let s = sarg(a, 1)?;
        parse_layout(&l, &s)
            .map(time_value)
            .ok_or_else(|| format!("parsing time {s:?} as {l:?}: cannot parse"))
    });
    m.insert("dateModify", |a| {
        let d = sarg(a, 0)?;
        let t = time_of(&arg(a, 1));
        let secs = parse_go_duration(&d).unwrap_or(0);
        Ok(time_value(t + chrono::Duration::seconds(secs)))
    });
}

fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let mult = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * mult;
    }
    Some(if neg { -(total as i64) } else { total as i64 })
}

fn parse_layout(layout: &str, s: &str) -> Option<DateTime<FixedOffset>> {
    let fmt = layout
        .replace("2006", "%Y")
        .replace("01", "%m")
        .replace("02", "%d")
        .replace("15", "%H")
        .replace("04", "%M")
        .replace("05", "%S")
        .replace("Z07:00", "%:z")
        .replace("-07:00", "%:z")
        .replace("-0700", "%z");
    if let Ok(d) = DateTime::parse_from_str(s, &fmt) {
        return Some(d);
    }
    chrono::NaiveDateTime::parse_from_str(s, &fmt)
        .ok()
        .map(|n| n.and_utc().fixed_offset())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, &fmt)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc().fixed_offset())
        })
}
