//! Go `time.Duration` text, the format of every interval and timeout in Flux's API.
//!
//! [`parse`] accepts what `time.ParseDuration` accepts for non-negative values: a sequence of
//! decimal numbers with units `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`, e.g. `1h30m`,
//! `1.5s`, `0`. [`format()`] writes the canonical Go form (`5m0s`, `1h0m0s`, `500ms`).

use std::time::Duration;

use crate::Error;

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration.
pub fn parse(value: &str) -> Result<Duration, Error> {
    let bad = |why: &str| Error::InvalidDuration {
        value: value.to_owned(),
        reason: why.to_owned(),
    };
    let mut s = value.strip_prefix('+').unwrap_or(value);
    if s.starts_with('-') {
        return Err(bad("negative durations are not allowed"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_end];
        s = &s[int_end..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            frac_part = &rest[..frac_end];
            s = &rest[frac_end..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad("expected a number"));
        }
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let Some(&(_, nanos)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(bad(if unit.is_empty() {
                "missing unit"
            } else {
                "unknown unit"
            }));
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad("number out of range"))?
        };
        let mut value_nanos = int.checked_mul(nanos).ok_or_else(|| bad("overflow"))?;
        let mut scale = nanos;
        for digit in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value_nanos += u128::from(digit - b'0') * scale;
        }
        total = total
            .checked_add(value_nanos)
            .filter(|t| *t <= i64::MAX as u128)
            .ok_or_else(|| bad("overflow"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("overflow"))?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| bad("overflow"))?;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration as Go's `Duration.String` does.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, div));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let secs = fraction(nanos % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn fraction(value: u128, div: u128) -> String {
    let int = value / div;
    let rem = value % div;
    if rem == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{rem:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2m0.5s").unwrap(), Duration::from_millis(120_500));
        assert_eq!(parse("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse("1µs").unwrap(), Duration::from_micros(1));
        assert_eq!(parse(".5h").unwrap(), Duration::from_secs(1800));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "-1s",
            "1..5s",
            "1s2",
            "99999999999999999999h",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(300)), "5m0s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        for s in ["5m0s", "1h0m0s", "1.5s", "500ms", "2h3m4.005s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
