//! kombu's JSON extensions (`kombu/utils/json.py`): objects `{"__type__": T, "__value__": V}` that
//! carry Python's datetime, date, time, Decimal, UUID and bytes through JSON.
//!
//! Task parameters and return values use the `Py*` wrappers below to read and write them; each
//! also accepts the plain-string form that kombu < 5.3 wrote.

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The marker for raw bytes: `bytes` when they are valid UTF-8, `base64` otherwise (as kombu writes).
pub fn bytes_marker(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => json!({"__type__": "bytes", "__value__": s}),
        Err(_) => json!({"__type__": "base64", "__value__": B64.encode(b)}),
    }
}

/// The bytes inside a `bytes`/`base64` marker, if `v` is one.
pub fn marker_bytes(v: &Value) -> Option<Vec<u8>> {
    let (ty, val) = marker(v)?;
    match (ty, val) {
        ("bytes", Value::String(s)) => Some(s.clone().into_bytes()),
        ("base64", Value::String(s)) => B64.decode(s).ok(),
        _ => None,
    }
}

/// Splits a marker object into its type name and value; `None` for anything else.
pub fn marker(v: &Value) -> Option<(&str, &Value)> {
    let o = v.as_object()?;
    if o.len() != 2 {
        return None;
    }
    Some((o.get("__type__")?.as_str()?, o.get("__value__")?))
}

fn unwrap_marker<'a, E: serde::de::Error>(v: &'a Value, ty: &str) -> Result<&'a Value, E> {
    match marker(v) {
        Some((t, inner)) if t == ty => Ok(inner),
        Some((t, _)) => Err(E::custom(format!("expected a {ty} marker, found {t}"))),
        None => Ok(v),
    }
}

fn str_of<'a, E: serde::de::Error>(v: &'a Value, what: &str) -> Result<&'a str, E> {
    v.as_str().ok_or_else(|| E::custom(format!("expected {what} text, found {v}")))
}

/// Parses Python's `isoformat()` output; naive values are UTC (as Celery treats them), a `Z` suffix
/// (kombu < 5.3) is accepted.
pub fn parse_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt);
    }
    if let Ok(dt) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%:z") {
        return Some(dt);
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Some(Utc.from_utc_datetime(&naive).fixed_offset())
}

/// Formats like Python's `datetime.isoformat()` (microseconds only when non-zero).
pub fn format_datetime(dt: &DateTime<FixedOffset>) -> String {
    if dt.timestamp_subsec_micros() == 0 {
        dt.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

/// A Python `datetime` (`{"__type__": "datetime"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PyDateTime(pub DateTime<FixedOffset>);

impl Serialize for PyDateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({"__type__": "datetime", "__value__": format_datetime(&self.0)}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PyDateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let s = str_of(unwrap_marker(&v, "datetime")?, "datetime")?;
        parse_datetime(s).map(PyDateTime).ok_or_else(|| D::Error::custom(format!("invalid datetime {s:?}")))
    }
}

/// A Python `date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PyDate(pub NaiveDate);

impl Serialize for PyDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({"__type__": "date", "__value__": self.0.format("%Y-%m-%d").to_string()}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PyDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let s = str_of(unwrap_marker(&v, "date")?, "date")?;
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map(PyDate).map_err(D::Error::custom)
    }
}

/// A Python `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PyTime(pub NaiveTime);

impl Serialize for PyTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = if self.0.format("%f").to_string() == "000000000" {
            self.0.format("%H:%M:%S").to_string()
        } else {
            self.0.format("%H:%M:%S%.6f").to_string()
        };
        json!({"__type__": "time", "__value__": text}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PyTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let s = str_of(unwrap_marker(&v, "time")?, "time")?;
        NaiveTime::parse_from_str(s, "%H:%M:%S%.f").map(PyTime).map_err(D::Error::custom)
    }
}

/// A Python `Decimal`, kept as its exact text (no float rounding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyDecimal(pub String);

impl Serialize for PyDecimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({"__type__": "decimal", "__value__": self.0}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PyDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match unwrap_marker(&v, "decimal")? {
            Value::String(s) => Ok(PyDecimal(s.clone())),
            Value::Number(n) => Ok(PyDecimal(n.to_string())),
            other => Err(D::Error::custom(format!("expected decimal text, found {other}"))),
        }
    }
}

/// A Python `UUID`; kombu writes `{"__type__": "uuid", "__value__": {"hex": "…"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyUuid(pub uuid::Uuid);

impl Serialize for PyUuid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({"__type__": "uuid", "__value__": {"hex": self.0.simple().to_string()}}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PyUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let inner = unwrap_marker(&v, "uuid")?;
        let text = match inner {
            Value::Object(o) => o.get("hex").and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
        .ok_or_else(|| D::Error::custom(format!("expected a uuid, found {inner}")))?;
        uuid::Uuid::parse_str(text).map(PyUuid).map_err(D::Error::custom)
    }
}

/// Python `bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyBytes(pub Vec<u8>);

impl Serialize for PyBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        bytes_marker(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PyBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if let Some(b) = marker_bytes(&v) {
            return Ok(PyBytes(b));
        }
        match v {
            Value::String(s) => Ok(PyBytes(s.into_bytes())),
            other => Err(D::Error::custom(format!("expected bytes, found {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_match_kombu_captures() {
        let dt = parse_datetime("2024-01-02T03:04:05.678901+00:00").unwrap();
        assert_eq!(
            serde_json::to_string(&PyDateTime(dt)).unwrap(),
            r#"{"__type__":"datetime","__value__":"2024-01-02T03:04:05.678901+00:00"}"#
        );
        let u: PyUuid =
            serde_json::from_str(r#"{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}"#)
                .unwrap();
        assert_eq!(u.0.to_string(), "12345678-1234-5678-1234-567812345678");
        let d: PyDecimal = serde_json::from_str(r#"{"__type__": "decimal", "__value__": "1.10"}"#).unwrap();
        assert_eq!(d.0, "1.10");
        assert_eq!(bytes_marker(b"hi"), json!({"__type__": "bytes", "__value__": "hi"}));
        assert_eq!(bytes_marker(&[0xff, 0]), json!({"__type__": "base64", "__value__": "/wA="}));
        let t: PyTime = serde_json::from_str(r#"{"__type__": "time", "__value__": "01:02:03"}"#).unwrap();
        assert_eq!(serde_json::to_value(t).unwrap(), json!({"__type__": "time", "__value__": "01:02:03"}));
    }

    #[test]
    fn old_kombu_plain_strings_are_accepted() {
        let dt: PyDateTime = serde_json::from_str(r#""2024-01-02T03:04:05Z""#).unwrap();
        assert_eq!(dt.0.timestamp(), 1704164645);
        let naive: PyDateTime = serde_json::from_str(r#""2024-01-02T03:04:05""#).unwrap();
        assert_eq!(naive.0, dt.0);
        let u: PyUuid = serde_json::from_str(r#""12345678-1234-5678-1234-567812345678""#).unwrap();
        assert_eq!(u.0.simple().to_string(), "12345678123456781234567812345678");
    }

    #[test]
    fn a_wrong_marker_is_an_error() {
        assert!(serde_json::from_str::<PyDate>(r#"{"__type__": "uuid", "__value__": "x"}"#).is_err());
    }
}
