//! Request parsing the way dockerd's Go does it, with Go's words in the errors: `ReadJSON` for
//! bodies, `strconv.ParseUint`/`ParseBool`/`Atoi` and `httputils.BoolValue` for query values.
//! Used where clients rely on dockerd's exact refusal (the swarm and plugin routes); owns no
//! route and no state.

use axum::http::StatusCode;
use serde_json::Value;

use super::ApiError;

/// A body as dockerd 23+ `ReadJSON` reads it: an empty body is no value; otherwise exactly one
/// JSON value of the Go type's kind (`object` or `array`), nothing after it.
pub fn read_json(body: &[u8], go_type: &str, kind: &str) -> Result<Option<Value>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let bad = |m: String| ApiError::bad_request(format!("invalid JSON: {m}"));
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let value = match values.next() {
        None => return Err(bad("got EOF while reading request body".into())),
        Some(Err(e)) if e.is_eof() => return Err(bad("got EOF while reading request body".into())),
        Some(Err(e)) => return Err(bad(e.to_string())),
        Some(Ok(v)) => v,
    };
    if body[values.byte_offset()..]
        .iter()
        .any(|b| !b.is_ascii_whitespace())
    {
        return Err(ApiError::bad_request("unexpected content after JSON"));
    }
    let found = match &value {
        Value::Null => return Ok(Some(value)),
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if found != kind {
        return Err(bad(format!(
            "json: cannot unmarshal {found} into Go value of type {go_type}"
        )));
    }
    Ok(Some(value))
}

/// Go's `%q` of a plain string, as `strconv` errors quote their input.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// `strconv.ParseUint(s, 10, 64)`: digits only; the error is Go's.
pub fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            quoted(s)
        ));
    }
    s.parse().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            quoted(s)
        )
    })
}

/// `strconv.Atoi(s)`: an optional sign, then digits; the error is Go's.
pub fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            quoted(s)
        ));
    }
    s.trim_start_matches('+')
        .parse()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", quoted(s)))
}

/// `strconv.ParseBool(s)`; the error is Go's.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            quoted(s)
        )),
    }
}

/// dockerd's `httputils.BoolValue`: set unless empty, `0`, `no`, `false` or `none`.
pub fn bool_value(v: Option<&String>) -> bool {
    let v = v.map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

/// The `filters` query as dockerd's `filters.FromJSON` reads it; anything it cannot read is
/// its bare `invalid filter`.
pub fn filters(
    raw: Option<&String>,
) -> Result<std::collections::HashMap<String, Vec<String>>, ApiError> {
    super::system::parse_filters(raw).map_err(|_| ApiError::bad_request("invalid filter"))
}

/// An error dockerd gives as a plain Go error: 500 with its text.
pub fn internal(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `<decimal><unit>` ("1h30m", "1.5s"),
/// or a bare "0". In nanoseconds.
pub fn parse_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration \"{s}\""))?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A date or RFC 3339-like time as dockerd's `timetypes.GetTimestamp` takes them
/// ("2024-01-02", "2024-01-02T15:04", "2024-01-02T15:04:05.5Z", "...+02:00"); no zone means
/// the daemon's, which is UTC here. In nanoseconds since the epoch.
fn parse_date_time(v: &str) -> Option<i128> {
    let (date, time) = v.split_once('T').unwrap_or((v, ""));
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let (d, date_zone) = match parts.next()? {
        d if d.len() > 2 => (d.get(..2)?, &d[2..]),
        d => (d, ""),
    };
    let d: u32 = d.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = (
        &time[..zone_at],
        if time.is_empty() {
            date_zone
        } else {
            &time[zone_at..]
        },
    );
    let mut fields = clock.splitn(3, ':');
    let mut next = |max: u32| -> Option<u32> {
        match fields.next() {
            None | Some("") => Some(0),
            Some(f) => f.parse().ok().filter(|n| *n <= max),
        }
    };
    let (hh, mm) = (next(23)?, next(59)?);
    let (ss, frac) = match fields.next() {
        None => (0, 0),
        Some(f) => {
            let (whole, frac) = f.split_once('.').unwrap_or((f, ""));
            let frac = if frac.is_empty() {
                0
            } else {
                format!("{:0<9}", frac.get(..frac.len().min(9))?)
                    .parse()
                    .ok()?
            };
            (whole.parse::<u32>().ok().filter(|n| *n <= 60)?, frac)
        }
    };
    let offset_secs: i64 = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let secs = days_from_civil(y, m, d) * 86_400
        + i64::from(hh) * 3600
        + i64::from(mm) * 60
        + i64::from(ss)
        - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(frac))
}

/// dockerd's `until` filter (`timetypes.GetTimestamp`): a duration before `now_ns` ("24h"),
/// a date or time ("2024-01-02T15:04:05Z"), or a Unix time ("1700000000.5"). In nanoseconds.
pub fn get_timestamp(v: &str, now_ns: i128) -> Result<i128, String> {
    if v != "0"
        && let Ok(d) = parse_duration(v)
    {
        return Ok(now_ns - d);
    }
    if v.contains('-') {
        return parse_date_time(v).ok_or_else(|| format!("parsing time \"{v}\": invalid time"));
    }
    super::system::parse_time(v)
        .map(i128::from)
        .map_err(|_| format!("failed to parse value as time or duration: \"{v}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_as_read_json_reads_them() {
        assert!(read_json(b"", "swarm.Spec", "object").unwrap().is_none());
        assert!(read_json(b"{}", "swarm.Spec", "object").unwrap().is_some());
        assert!(
            read_json(b"null", "swarm.Spec", "object")
                .unwrap()
                .is_some()
        );
        let msg = |r: Result<Option<Value>, ApiError>| r.unwrap_err().1;
        assert_eq!(
            msg(read_json(b" ", "swarm.Spec", "object")),
            "invalid JSON: got EOF while reading request body"
        );
        assert_eq!(
            msg(read_json(b"{} {}", "swarm.Spec", "object")),
            "unexpected content after JSON"
        );
        assert_eq!(
            msg(read_json(b"[]", "swarm.Spec", "object")),
            "invalid JSON: json: cannot unmarshal array into Go value of type swarm.Spec"
        );
        assert!(msg(read_json(b"{bad", "swarm.Spec", "object")).starts_with("invalid JSON: "));
    }

    #[test]
    fn numbers_and_booleans_fail_with_gos_words() {
        assert_eq!(parse_uint("12"), Ok(12));
        assert_eq!(
            parse_uint(""),
            Err("strconv.ParseUint: parsing \"\": invalid syntax".into())
        );
        assert_eq!(
            parse_uint("+1"),
            Err("strconv.ParseUint: parsing \"+1\": invalid syntax".into())
        );
        assert_eq!(
            parse_uint("99999999999999999999"),
            Err("strconv.ParseUint: parsing \"99999999999999999999\": value out of range".into())
        );
        assert_eq!(atoi("-3"), Ok(-3));
        assert_eq!(atoi("+3"), Ok(3));
        assert_eq!(
            atoi(""),
            Err("strconv.Atoi: parsing \"\": invalid syntax".into())
        );
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("F"), Ok(false));
        assert!(parse_bool("yes").is_err());
        assert!(bool_value(Some(&"True".into())));
        assert!(bool_value(Some(&"yes".into())));
        assert!(!bool_value(Some(&" No ".into())));
        assert!(!bool_value(None));
        assert_eq!(filters(Some(&"x".into())).unwrap_err().1, "invalid filter");
    }

    #[test]
    fn until_reads_as_dockerd_reads_it() {
        let s = 1_000_000_000i128;
        assert_eq!(parse_duration("1h30m"), Ok(5400 * s));
        assert_eq!(parse_duration("1.5s"), Ok(3 * s / 2));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        let now = 1_700_000_000 * s;
        assert_eq!(get_timestamp("10m", now), Ok(now - 600 * s));
        assert_eq!(get_timestamp("1700000000", now), Ok(now));
        assert_eq!(get_timestamp("0", now), Ok(0));
        assert_eq!(get_timestamp("1970-01-02", now), Ok(86_400 * s));
        assert_eq!(get_timestamp("2023-11-14T22:13:20Z", now), Ok(now));
        assert_eq!(
            get_timestamp("2023-11-14T22:13:20.5Z", now),
            Ok(now + s / 2)
        );
        assert_eq!(get_timestamp("2023-11-15T00:13:20+02:00", now), Ok(now));
        assert_eq!(get_timestamp("2023-11-14T22:13", now), Ok(now - 20 * s));
        assert!(get_timestamp("yesterday", now).is_err());
        assert!(get_timestamp("2023-13-01", now).is_err());
    }
}
