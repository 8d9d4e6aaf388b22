//! Serializers (`kombu/serialization.py`): content types, `accept_content`, and transcoding every
//! accepted format into one value model, `serde_json::Value` with kombu's `__type__` markers.
//!
//! JSON is the fast path and stays as bytes (see `message.rs`); msgpack, YAML and pickle bodies are
//! transcoded to JSON once, so everything downstream reads a single format.

use serde_json::{Map, Number, Value};

use super::{json, ProtocolError};

/// A content type kombu registers. Pickle is read and written only for plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// `application/json` (kombu's default, with `__type__` markers).
    Json,
    /// `application/x-msgpack`.
    MsgPack,
    /// `application/x-yaml`.
    Yaml,
    /// `application/x-python-serialize`: None, bool, int, float, str, bytes, list, tuple, dict only.
    Pickle,
    /// `application/data`: raw bytes, always trusted.
    Data,
    /// `text/plain`: raw text, always trusted.
    Text,
}

impl ContentType {
    /// The MIME type written in `content_type`.
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::MsgPack => "application/x-msgpack",
            ContentType::Yaml => "application/x-yaml",
            ContentType::Pickle => "application/x-python-serialize",
            ContentType::Data => "application/data",
            ContentType::Text => "text/plain",
        }
    }

    /// The `content_encoding` kombu writes beside it.
    pub fn encoding(self) -> &'static str {
        match self {
            ContentType::Json | ContentType::Yaml | ContentType::Text => "utf-8",
            ContentType::MsgPack | ContentType::Pickle | ContentType::Data => "binary",
        }
    }

    /// Resolves a serializer name (`"json"`, as in `task_serializer`) or a MIME type.
    pub fn from_name(name: &str) -> Result<Self, ProtocolError> {
        Ok(match name {
            "json" | "application/json" => ContentType::Json,
            "msgpack" | "application/x-msgpack" => ContentType::MsgPack,
            "yaml" | "application/x-yaml" => ContentType::Yaml,
            "pickle" | "application/x-python-serialize" => ContentType::Pickle,
            "application/data" => ContentType::Data,
            "text/plain" | "application/text" => ContentType::Text,
            other => return Err(ProtocolError::UnknownContentType(other.to_owned())),
        })
    }

    /// Decodes `bytes` into the value model. Never panics.
    pub fn decode(self, bytes: &[u8]) -> Result<Value, ProtocolError> {
        let mime = self.mime();
        match self {
            ContentType::Json => serde_json::from_slice(bytes).map_err(|e| ProtocolError::decode(mime, e)),
            ContentType::MsgPack => {
                let mut rd = bytes;
                let v = rmpv::decode::read_value(&mut rd).map_err(|e| ProtocolError::decode(mime, e))?;
                if !rd.is_empty() {
                    return Err(ProtocolError::decode(mime, format!("{} bytes after the value", rd.len())));
                }
                msgpack_to_json(v).map_err(|e| ProtocolError::decode(mime, e))
            }
            ContentType::Yaml => serde_yaml_ng::from_slice(bytes).map_err(|e| ProtocolError::decode(mime, e)),
            ContentType::Pickle => {
                let v = serde_pickle::value_from_slice(bytes, serde_pickle::DeOptions::new())
                    .map_err(|e| ProtocolError::decode(mime, e))?;
                pickle_to_json(v).map_err(|e| ProtocolError::decode(mime, e))
            }
            ContentType::Data => Ok(json::bytes_marker(bytes)),
            ContentType::Text => std::str::from_utf8(bytes)
                .map(|s| Value::String(s.to_owned()))
                .map_err(|e| ProtocolError::decode(mime, e)),
        }
    }

    /// Encodes a value in this content type.
    pub fn encode(self, value: &Value) -> Result<Vec<u8>, ProtocolError> {
        let mime = self.mime();
        match self {
            ContentType::Json => serde_json::to_vec(value).map_err(|e| ProtocolError::encode(mime, e)),
            ContentType::MsgPack => {
                let mut out = Vec::new();
                rmpv::encode::write_value(&mut out, &json_to_msgpack(value))
                    .map_err(|e| ProtocolError::encode(mime, e))?;
                Ok(out)
            }
            ContentType::Yaml => {
                serde_yaml_ng::to_string(value).map(String::into_bytes).map_err(|e| ProtocolError::encode(mime, e))
            }
            ContentType::Pickle => serde_pickle::value_to_vec(&json_to_pickle(value), serde_pickle::SerOptions::new())
                .map_err(|e| ProtocolError::encode(mime, e)),
            ContentType::Data => match json::marker_bytes(value) {
                Some(b) => Ok(b),
                None => Err(ProtocolError::encode(mime, "application/data carries bytes only")),
            },
            ContentType::Text => match value {
                Value::String(s) => Ok(s.clone().into_bytes()),
                _ => Err(ProtocolError::encode(mime, "text/plain carries a string only")),
            },
        }
    }
}

/// `accept_content`: the content types a consumer agrees to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    allowed: Vec<ContentType>,
    /// The largest body taken after decompression, in bytes (`usize::MAX`: no limit).
    max_body: usize,
}

/// The default [`Accept::max_body`]: 64 MiB (`worker_max_body_size`).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

impl Default for Accept {
    /// Celery's default: `["json"]`, bodies up to [`DEFAULT_MAX_BODY`].
    fn default() -> Self {
        Accept { allowed: vec![ContentType::Json], max_body: DEFAULT_MAX_BODY }
    }
}

impl Accept {
    /// Builds the set from setting values (`["json", "msgpack"]` or MIME types).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, ProtocolError> {
        let allowed = names.iter().map(|n| ContentType::from_name(n.as_ref())).collect::<Result<_, _>>()?;
        Ok(Accept { allowed, max_body: DEFAULT_MAX_BODY })
    }

    /// Caps the size of a body after decompression (`0`: no cap).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = if bytes == 0 { usize::MAX } else { bytes };
        self
    }

    /// The cap on a body's size after decompression.
    pub fn body_limit(&self) -> usize {
        self.max_body
    }

    /// Checks a message's `content_type`; raw data and text are always trusted, as in kombu.
    pub fn check(&self, content_type: &str) -> Result<ContentType, ProtocolError> {
        let ct = match ContentType::from_name(content_type) {
            Ok(ct) => ct,
            Err(_) => return Err(ProtocolError::ContentDisallowed { content_type: content_type.to_owned() }),
        };
        if matches!(ct, ContentType::Data | ContentType::Text) || self.allowed.contains(&ct) {
            Ok(ct)
        } else {
            Err(ProtocolError::ContentDisallowed { content_type: content_type.to_owned() })
        }
    }
}

fn msgpack_to_json(v: rmpv::Value) -> Result<Value, String> {
    use rmpv::Value as M;
    Ok(match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Value::Number(u.into())
            } else if let Some(s) = i.as_i64() {
                Value::Number(s.into())
            } else {
                return Err("integer out of range".into());
            }
        }
        M::F32(f) => float(f as f64)?,
        M::F64(f) => float(f)?,
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => return Err("string is not valid UTF-8".into()),
        },
        M::Binary(b) => json::bytes_marker(&b),
        M::Array(items) => Value::Array(items.into_iter().map(msgpack_to_json).collect::<Result<_, _>>()?),
        M::Map(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = match k {
                    M::String(s) => s.into_str().ok_or("map key is not valid UTF-8")?,
                    M::Integer(i) => i.to_string(),
                    other => return Err(format!("unsupported map key {other}")),
                };
                map.insert(key, msgpack_to_json(v)?);
            }
            Value::Object(map)
        }
        M::Ext(tag, _) => return Err(format!("msgpack extension type {tag} is not supported")),
    })
}

fn json_to_msgpack(v: &Value) -> rmpv::Value {
    use rmpv::Value as M;
    if let Some(b) = json::marker_bytes(v) {
        return M::Binary(b);
    }
    match v {
        Value::Null => M::Nil,
        Value::Bool(b) => M::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                M::from(u)
            } else if let Some(i) = n.as_i64() {
                M::from(i)
            } else {
                M::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => M::from(s.as_str()),
        Value::Array(a) => M::Array(a.iter().map(json_to_msgpack).collect()),
        Value::Object(o) => M::Map(o.iter().map(|(k, v)| (M::from(k.as_str()), json_to_msgpack(v))).collect()),
    }
}

fn pickle_to_json(v: serde_pickle::Value) -> Result<Value, String> {
    use serde_pickle::{HashableValue as H, Value as P};
    fn key(k: H) -> Result<String, String> {
        Ok(match k {
            H::String(s) => s,
            H::I64(i) => i.to_string(),
            H::Int(i) => i.to_string(),
            H::Bool(b) => if b { "True" } else { "False" }.to_owned(),
            H::None => "None".to_owned(),
            other => return Err(format!("unsupported dict key {other:?}")),
        })
    }
    Ok(match v {
        P::None => Value::Null,
        P::Bool(b) => Value::Bool(b),
        P::I64(i) => Value::Number(i.into()),
        P::Int(big) => {
            let s = big.to_string();
            Value::Number(s.parse::<u64>().map(Number::from).map_err(|_| format!("integer {s} out of range"))?)
        }
        P::F64(f) => float(f)?,
        P::Bytes(b) => json::bytes_marker(&b),
        P::String(s) => Value::String(s),
        P::List(items) | P::Tuple(items) => {
            Value::Array(items.into_iter().map(pickle_to_json).collect::<Result<_, _>>()?)
        }
        P::Dict(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                map.insert(key(k)?, pickle_to_json(v)?);
            }
            Value::Object(map)
        }
        P::Set(_) | P::FrozenSet(_) => return Err("sets are not plain data".into()),
    })
}

fn json_to_pickle(v: &Value) -> serde_pickle::Value {
    use serde_pickle::{HashableValue as H, Value as P};
    if let Some(b) = json::marker_bytes(v) {
        return P::Bytes(b);
    }
    match v {
        Value::Null => P::None,
        Value::Bool(b) => P::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => P::I64(i),
            None => P::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => P::String(s.clone()),
        Value::Array(a) => P::List(a.iter().map(json_to_pickle).collect()),
        Value::Object(o) => P::Dict(o.iter().map(|(k, v)| (H::String(k.clone()), json_to_pickle(v))).collect()),
    }
}

fn float(f: f64) -> Result<Value, String> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("float {f} has no JSON form"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept_defaults_to_json_and_trusts_raw_data() {
        let a = Accept::default();
        assert_eq!(a.check("application/json").unwrap(), ContentType::Json);
        assert_eq!(a.check("application/data").unwrap(), ContentType::Data);
        let err = a.check("application/x-python-serialize").unwrap_err();
        assert!(err.to_string().contains("application/x-python-serialize"), "{err}");
        assert!(matches!(a.check("application/x-weird"), Err(ProtocolError::ContentDisallowed { .. })));
    }

    #[test]
    fn every_serializer_round_trips_plain_data() {
        let v = json!([[2, 3, -7, 1.5, "é", null, true], {"k": "v", "n": [1, {"a": {}}]}, {"callbacks": null}]);
        for ct in [ContentType::Json, ContentType::MsgPack, ContentType::Yaml, ContentType::Pickle] {
            let bytes = ct.encode(&v).unwrap();
            assert_eq!(ct.decode(&bytes).unwrap(), v, "{ct:?}");
        }
    }

    #[test]
    fn binary_values_become_kombu_bytes_markers() {
        let raw = json!({"__type__": "base64", "__value__": "/wA="});
        for ct in [ContentType::MsgPack, ContentType::Pickle] {
            let bytes = ct.encode(&raw).unwrap();
            assert_eq!(ct.decode(&bytes).unwrap(), raw, "{ct:?}");
        }
    }

    #[test]
    fn garbage_is_a_typed_error_naming_the_content_type() {
        for ct in [ContentType::Json, ContentType::MsgPack, ContentType::Yaml, ContentType::Pickle] {
            let err = ct.decode(b"\xc1\xff{[not valid").unwrap_err();
            assert!(err.to_string().contains(ct.mime()), "{err}");
        }
    }
}
