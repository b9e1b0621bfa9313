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
}
