//! AMQP field tables as py-amqp writes and reads them, to and from JSON values (the form every
//! other layer of celeriac holds headers in): None ⇄ `V`, bool ⇄ `t`, int ⇄ `I` (`l` outside 32
//! bits), float ⇄ `d`, str ⇄ `S`, list ⇄ `A`, dict ⇄ `F`. Read only: the other integer widths,
//! `f`, `D` (decimal) and `T` (timestamp) as numbers, `x` (bytes) as a string.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

/// A JSON value as py-amqp would type it.
pub(super) fn to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => match i32::try_from(i) {
                Ok(i) => AMQPValue::LongInt(i),
                Err(_) => AMQPValue::LongLongInt(i),
            },
            None => AMQPValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(a.iter().map(to_amqp).collect::<Vec<_>>())),
        Value::Object(m) => AMQPValue::FieldTable(to_table(m)),
    }
}

/// A JSON object as a field table.
pub(super) fn to_table(m: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in m {
        t.insert(ShortString::from(k.as_str()), to_amqp(v));
    }
    t
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A field value as JSON.
pub(super) fn from_amqp(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Void => Value::Null,
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => (*i).into(),
        AMQPValue::Float(f) => float(f64::from(*f)),
        AMQPValue::Double(f) => float(*f),
        AMQPValue::DecimalValue(d) => float(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into_owned()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(from_amqp).collect()),
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::FieldTable(t) => Value::Object(from_table(t)),
    }
}

/// A field table as JSON text, written straight from the table: reading task headers from it
/// with serde_json allocates a fraction of what building a `Value` map first does.
pub(super) fn to_json(t: &FieldTable) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_table(&mut out, t);
    out
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing into a Vec cannot fail");
}

fn write_table(out: &mut Vec<u8>, t: &FieldTable) {
    out.push(b'{');
    for (i, (k, v)) in t.inner().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k.as_str());
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, v: &AMQPValue) {
    use std::io::Write;
    match v {
        AMQPValue::Void => out.extend_from_slice(b"null"),
        AMQPValue::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(s) => write_str(out, s),
            Err(_) => write_str(out, &String::from_utf8_lossy(s.as_bytes())),
        },
        AMQPValue::ShortString(s) => write_str(out, s.as_str()),
        AMQPValue::LongInt(i) => {
            let _ = write!(out, "{i}");
        }
        AMQPValue::LongLongInt(i) => {
            let _ = write!(out, "{i}");
        }
        AMQPValue::FieldArray(a) => {
            out.push(b'[');
            for (i, v) in a.as_slice().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, v);
            }
            out.push(b']');
        }
        AMQPValue::FieldTable(t) => write_table(out, t),
        other => serde_json::to_writer(&mut *out, &from_amqp(other)).expect("writing into a Vec cannot fail"),
    }
}

/// A field table as a JSON object.
pub(super) fn from_table(t: &FieldTable) -> Map<String, Value> {
    t.inner().iter().map(|(k, v)| (k.as_str().to_owned(), from_amqp(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn celery_headers_keep_their_types_both_ways() {
        let h = json!({"lang": "py", "retries": 0, "timelimit": [null, 1.5], "ignore_result": false,
            "big": 5_000_000_000i64, "stamps": {"a": ["x", 1]}, "eta": null});
        let t = to_table(h.as_object().unwrap());
        assert!(matches!(t.inner().get("retries"), Some(AMQPValue::LongInt(0))));
        assert!(matches!(t.inner().get("big"), Some(AMQPValue::LongLongInt(5_000_000_000))));
        assert!(matches!(t.inner().get("eta"), Some(AMQPValue::Void)));
        assert_eq!(Value::Object(from_table(&t)), h);
        assert_eq!(serde_json::from_slice::<Value>(&to_json(&t)).unwrap(), h);
    }
}
