//! Task messages, protocol v2 (`celery/app/amqp.py: as_task_v2`) with v1 and "hybrid" bodies read
//! into the same model.
//!
//! Decoding is two-stage so the hot path stays cheap: headers are a small typed struct; the body
//! stays bytes until [`TaskMessage::decode_body`] checks `accept_content`, undoes compression and
//! (for msgpack/YAML/pickle only) transcodes to JSON; [`DecodedBody::parse`] then borrows `args`
//! and `kwargs` as raw JSON slices that a handler deserializes into its own types.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::{Accept, Compression, ContentType, ProtocolError, Signature};

/// Message headers (PROTOCOL.md §1.2) in the order Celery writes them; unknown headers are kept
/// in `extra` and written back. Missing headers take their defaults (`lang` "py", the rest
/// empty); a `null` `retries` or `replaced_task_nesting` reads as 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headers {
    /// The language of the sender (`py`).
    #[serde(default = "lang_py")]
    pub lang: String,
    /// Registered task name; empty only while a v1 message awaits its body.
    #[serde(default)]
    pub task: String,
    /// The task id (a UUID).
    #[serde(default)]
    pub id: String,
    /// The name shown instead of `task` in logs and monitors.
    #[serde(default)]
    pub shadow: Option<String>,
    /// ISO-8601; naive values mean UTC.
    #[serde(default)]
    pub eta: Option<String>,
    /// When the task expires (ISO 8601), if ever.
    #[serde(default)]
    pub expires: Option<String>,
    /// The group the task belongs to.
    #[serde(default)]
    pub group: Option<String>,
    /// The task's position in its group.
    #[serde(default)]
    pub group_index: Option<i64>,
    /// How many times the task was retried so far.
    #[serde(default, deserialize_with = "null_is_default")]
    pub retries: u32,
    /// `[hard, soft]` seconds (hard first, whatever protocol.rst says), int or float as sent.
    #[serde(default)]
    pub timelimit: (Option<Number>, Option<Number>),
    /// The id of the first task of the workflow.
    #[serde(default)]
    pub root_id: Option<String>,
    /// The id of the task that sent this one.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// The arguments as shown in logs (`repr`).
    #[serde(default)]
    pub argsrepr: Option<String>,
    /// The keyword arguments as shown in logs (`repr`).
    #[serde(default)]
    pub kwargsrepr: Option<String>,
    /// The sender's node name (`gen<pid>@<host>`).
    #[serde(default)]
    pub origin: Option<String>,
    /// `null` when sent through `send_task` without the option.
    #[serde(default)]
    pub ignore_result: Option<bool>,
    /// How many times the task was replaced (`Task.replace`).
    #[serde(default, deserialize_with = "null_is_default")]
    pub replaced_task_nesting: u32,
    /// The names of the stamps (Celery 5.3 stamping).
    #[serde(default)]
    pub stamped_headers: Option<Vec<String>>,
    /// The stamps by name.
    #[serde(default)]
    pub stamps: Map<String, Value>,
    /// MIME type of the body compression, when compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// User headers (`apply_async(headers=…)`), `redelivered`, and anything newer.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Why some header could not be read (set only by [`Headers::lenient`]): the worker rejects
    /// the message and, its id being known, stores the FAILURE a waiting client needs.
    #[serde(skip)]
    pub malformed: Option<String>,
}

/// Written by hand rather than derived: serde's `flatten` (for `extra`) buffers every header
/// into an intermediate tree first, which was most of an envelope's decode time.
impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a task message's headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Headers, A::Error> {
                let mut h = Headers::new("", "");
                (h.root_id, h.ignore_result) = (None, None);
                while let Some(key) = m.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "lang" => h.lang = m.next_value()?,
                        "task" => h.task = m.next_value()?,
                        "id" => h.id = m.next_value()?,
                        "shadow" => h.shadow = m.next_value()?,
                        "eta" => h.eta = m.next_value()?,
                        "expires" => h.expires = m.next_value()?,
                        "group" => h.group = m.next_value()?,
                        "group_index" => h.group_index = m.next_value()?,
                        "retries" => h.retries = m.next_value::<Option<u32>>()?.unwrap_or_default(),
                        "timelimit" => h.timelimit = m.next_value()?,
                        "root_id" => h.root_id = m.next_value()?,
                        "parent_id" => h.parent_id = m.next_value()?,
                        "argsrepr" => h.argsrepr = m.next_value()?,
                        "kwargsrepr" => h.kwargsrepr = m.next_value()?,
                        "origin" => h.origin = m.next_value()?,
                        "ignore_result" => h.ignore_result = m.next_value()?,
                        "replaced_task_nesting" => {
                            h.replaced_task_nesting = m.next_value::<Option<u32>>()?.unwrap_or_default()
                        }
                        "stamped_headers" => h.stamped_headers = m.next_value()?,
                        "stamps" => h.stamps = m.next_value::<Option<Map<String, Value>>>()?.unwrap_or_default(),
                        "compression" => h.compression = m.next_value()?,
                        _ => {
                            let v = m.next_value()?;
                            h.extra.insert(key.into_owned(), v);
                        }
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

impl Headers {
    /// Whether the sender asked for no result.
    pub fn ignores_result(&self) -> bool {
        self.ignore_result.unwrap_or(false)
    }

    /// `(hard, soft)` time limits in seconds.
    pub fn time_limits(&self) -> (Option<f64>, Option<f64>) {
        (self.timelimit.0.as_ref().and_then(Number::as_f64), self.timelimit.1.as_ref().and_then(Number::as_f64))
    }

    /// Sets `(hard, soft)` time limits; whole seconds are written as integers, as Python does.
    pub fn set_time_limits(&mut self, hard: Option<f64>, soft: Option<f64>) {
        fn num(s: f64) -> Option<Number> {
            if s.fract() == 0.0 && s.abs() < 1e15 {
                Some(Number::from(s as i64))
            } else {
                Number::from_f64(s)
            }
        }
        self.timelimit = (hard.and_then(num), soft.and_then(num));
    }

    /// Headers for a new task `task` with id `id`, every other field at Celery's default.
    pub fn new(task: impl Into<String>, id: impl Into<String>) -> Self {
        let id = id.into();
        Headers {
            lang: "py".to_owned(),
            task: task.into(),
            root_id: Some(id.clone()),
            id,
            shadow: None,
            eta: None,
            expires: None,
            group: None,
            group_index: None,
            retries: 0,
            timelimit: (None, None),
            parent_id: None,
            argsrepr: None,
            kwargsrepr: None,
            origin: None,
            ignore_result: Some(false),
            replaced_task_nesting: 0,
            stamped_headers: None,
            stamps: Map::new(),
            compression: None,
            extra: Map::new(),
            malformed: None,
        }
    }

    /// Reads headers that failed to decode as a whole: every header that reads on its own is
    /// kept, the others are named in [`Headers::malformed`] (their defaults stand in). For the
    /// error path only: it decodes each header twice.
    pub fn lenient(map: Map<String, Value>) -> Headers {
        let mut kept = Map::new();
        let mut bad = Vec::new();
        for (k, v) in map {
            let one = Value::Object(Map::from_iter([(k.clone(), v)]));
            match Headers::deserialize(&one) {
                Ok(_) => {
                    let Value::Object(one) = one else { unreachable!("built as an object") };
                    kept.extend(one);
                }
                Err(e) => {
                    let shown = super::shorten(&one[&k].to_string(), 80).into_owned();
                    bad.push(format!("header {k:?} = {shown}: {e}"));
                }
            }
        }
        let mut h = Headers::deserialize(&Value::Object(kept)).unwrap_or_else(|_| Headers::new("", ""));
        if !bad.is_empty() {
            h.malformed = Some(bad.join("; "));
        }
        h
    }
}

/// Message properties (PROTOCOL.md §1.3); transport-specific fields such as `delivery_info`
/// and `delivery_tag` live with the transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Properties {
    /// The task id again (AMQP's `correlation_id`; rpc:// replies carry it).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The reply queue of an rpc:// client.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// 2: persistent (the default), 1: transient.
    #[serde(default = "persistent")]
    pub delivery_mode: u8,
    /// AMQP's per-message TTL in milliseconds, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// The message priority.
    #[serde(default)]
    pub priority: u8,
}

fn persistent() -> u8 {
    2
}

impl Default for Properties {
    fn default() -> Self {
        Properties { correlation_id: None, reply_to: None, delivery_mode: 2, expiration: None, priority: 0 }
    }
}

/// A task message: headers, properties and the body bytes exactly as sent (serialized, maybe
/// compressed; never base64 — that belongs to the Redis envelope).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    /// The task headers.
    pub headers: Headers,
    /// The message properties.
    pub properties: Properties,
    /// The body's content type (`application/json`, …).
    pub content_type: String,
    /// The body's content encoding (`utf-8`, `binary`).
    pub content_encoding: String,
    /// The body: `[args, kwargs, embed]` serialized (and maybe compressed).
    pub body: Bytes,
}

/// Callbacks, errbacks, remaining chain steps and chord body (`embed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Embed {
    /// Signatures to call with the result on success (`link`).
    #[serde(default)]
    pub callbacks: Option<Vec<Signature>>,
    /// Signatures to call on failure (`link_error`).
    #[serde(default)]
    pub errbacks: Option<Vec<Signature>>,
    /// Remaining steps in reverse order: the next step is last.
    #[serde(default)]
    pub chain: Option<Vec<Signature>>,
    /// The chord body to call once the group this task belongs to is done.
    #[serde(default)]
    pub chord: Option<Signature>,
}

impl TaskMessage {
    /// Where an rpc:// result of this message goes: its `reply_to` queue and its
    /// `correlation_id` (the task id when it has none), as Celery's `destination_for` reads them.
    pub fn reply_destination(&self) -> Option<(String, String)> {
        let reply_to = self.properties.reply_to.clone().filter(|r| !r.is_empty())?;
        Some((reply_to, self.properties.correlation_id.clone().unwrap_or_else(|| self.headers.id.clone())))
    }

    /// Builds a JSON task message from already-serialized body bytes.
    pub fn json(headers: Headers, properties: Properties, body: impl Into<Bytes>) -> Self {
        TaskMessage {
            headers,
            properties,
            content_type: ContentType::Json.mime().to_owned(),
            content_encoding: ContentType::Json.encoding().to_owned(),
            body: body.into(),
        }
    }

    /// Builds a message with `args`, `kwargs` and `embed` encoded in `content_type`, optionally
    /// compressed (setting the `compression` header).
    pub fn encode(
        mut headers: Headers,
        properties: Properties,
        content_type: ContentType,
        compression: Option<Compression>,
        args: &[Value],
        kwargs: &Map<String, Value>,
        embed: &Embed,
    ) -> Result<Self, ProtocolError> {
        let mut body = if content_type == ContentType::Json {
            encode_json_body(args, kwargs, embed)?
        } else {
            let embed = serde_json::to_value(embed).map_err(|e| ProtocolError::encode(content_type.mime(), e))?;
            content_type.encode(&Value::Array(vec![
                Value::from(args.to_vec()),
                Value::Object(kwargs.clone()),
                embed,
            ]))?
        };
        if let Some(c) = compression {
            body = c.compress(&body)?;
            headers.compression = Some(c.mime().to_owned());
        }
        Ok(TaskMessage {
            headers,
            properties,
            content_type: content_type.mime().to_owned(),
            content_encoding: content_type.encoding().to_owned(),
            body: Bytes::from(body),
        })
    }

    /// Checks `accept_content`, decompresses, transcodes non-JSON bodies to JSON, and reads a
    /// protocol v1 body's fields into the headers, so every message leaves here as v2.
    pub fn decode_body(&mut self, accept: &Accept) -> Result<DecodedBody, ProtocolError> {
        let ct = accept.check(&self.content_type)?;
        let raw: Bytes = match &self.headers.compression {
            Some(c) => Bytes::from(Compression::from_name(c)?.decompress_max(&self.body, accept.body_limit())?),
            None => self.body.clone(),
        };
        if raw.len() > accept.body_limit() {
            return Err(ProtocolError::TooLarge { what: "message body", limit: accept.body_limit() });
        }
        let json = if ct == ContentType::Json {
            raw
        } else {
            let v = ct.decode(&raw)?;
            Bytes::from(serde_json::to_vec(&v).map_err(|e| ProtocolError::decode(ct.mime(), e))?)
        };
        let decoded = DecodedBody { json };
        if self.headers.task.is_empty() {
            decoded.upgrade_v1(&mut self.headers)?;
        }
        if self.headers.task.is_empty() {
            return Err(ProtocolError::Malformed("no task name in headers or body".into()));
        }
        if self.headers.id.is_empty() {
            return Err(ProtocolError::Malformed(format!("task {} has no id", self.headers.task)));
        }
        Ok(decoded)
    }
}

/// Writes `[args, kwargs, embed]` as compact JSON.
pub fn encode_json_body(args: &[Value], kwargs: &Map<String, Value>, embed: &Embed) -> Result<Vec<u8>, ProtocolError> {
    serde_json::to_vec(&(args, kwargs, embed)).map_err(|e| ProtocolError::encode("application/json", e))
}

/// A body after accept check, decompression and transcoding: JSON bytes.
#[derive(Debug, Clone)]
pub struct DecodedBody {
    json: Bytes,
}

/// The parsed body: positional and keyword arguments as raw JSON slices of the input.
#[derive(Debug)]
pub struct Body<'a> {
    /// Positional arguments.
    pub args: Vec<&'a RawValue>,
    /// Keyword arguments in the sender's order.
    pub kwargs: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Callbacks, errbacks, chain and chord.
    pub embed: Embed,
}

impl<'a> Body<'a> {
    /// The keyword argument `name`, if given.
    pub fn kwarg(&self, name: &str) -> Option<&'a RawValue> {
        self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// Positional arguments as owned values (for reprs, extended results, retries).
    pub fn args_value(&self) -> Vec<Value> {
        self.args.iter().map(|r| serde_json::from_str(r.get()).unwrap_or(Value::Null)).collect()
    }

    /// Keyword arguments as an owned object.
    pub fn kwargs_value(&self) -> Map<String, Value> {
        self.kwargs.iter().map(|(k, r)| (k.to_string(), serde_json::from_str(r.get()).unwrap_or(Value::Null))).collect()
    }
}

impl DecodedBody {
    /// A body of these arguments and no embed (a task called in-process, as `celery.map` calls
    /// its task).
    pub fn of_args(args: &[Value], kwargs: &Map<String, Value>) -> Self {
        DecodedBody { json: encode_json_body(args, kwargs, &Embed::default()).expect("JSON values").into() }
    }

    /// The JSON bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    /// Borrows args and kwargs out of the body: `[args, kwargs, embed]` (v2) or a dict with
    /// `args`/`kwargs`/`callbacks`/`errbacks`/`chord` (v1 and hybrid).
    pub fn parse(&self) -> Result<Body<'_>, ProtocolError> {
        let text = std::str::from_utf8(&self.json).map_err(|e| ProtocolError::decode("application/json", e))?;
        let wire: WireBody<'_> =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(format!("body: {e}")))?;
        Ok(Body { args: wire.args, kwargs: wire.kwargs, embed: wire.embed })
    }

    fn upgrade_v1(&self, headers: &mut Headers) -> Result<(), ProtocolError> {
        #[derive(Deserialize)]
        struct V1 {
            task: String,
            id: String,
            #[serde(default)]
            group: Option<String>,
            #[serde(default)]
            taskset: Option<String>,
            #[serde(default)]
            group_index: Option<i64>,
            #[serde(default)]
            retries: u32,
            #[serde(default)]
            eta: Option<String>,
            #[serde(default)]
            expires: Option<String>,
            #[serde(default)]
            timelimit: Option<(Option<Number>, Option<Number>)>,
        }
        let v1: V1 = serde_json::from_slice(&self.json).map_err(|e| {
            ProtocolError::Malformed(format!("no task header, and the body is not a v1 task dict: {e}"))
        })?;
        headers.task = v1.task;
        headers.root_id.get_or_insert_with(|| v1.id.clone());
        headers.id = v1.id;
        headers.group = v1.group.or(v1.taskset);
        headers.group_index = v1.group_index;
        headers.retries = v1.retries;
        headers.eta = v1.eta;
        headers.expires = v1.expires;
        headers.timelimit = v1.timelimit.unwrap_or((None, None));
        Ok(())
    }
}

struct WireBody<'a> {
    args: Vec<&'a RawValue>,
    kwargs: Vec<(Cow<'a, str>, &'a RawValue)>,
    embed: Embed,
}

struct KwArgs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for KwArgs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KwArgs<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("kwargs object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(KwArgs(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(KwArgs(out))
            }
        }
        d.deserialize_any(V)
    }
}

struct Args<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for Args<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("args list")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Args(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(s.size_hint().unwrap_or(2));
                while let Some(v) = s.next_element::<&'de RawValue>()? {
                    out.push(v);
                }
                Ok(Args(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for WireBody<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireBody<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a task body [args, kwargs, embed] or a v1 task dict")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let args = s.next_element::<Args<'de>>()?.map(|a| a.0).unwrap_or_default();
                let kwargs = s.next_element::<KwArgs<'de>>()?.map(|k| k.0).unwrap_or_default();
                let embed = s.next_element::<Option<Embed>>()?.flatten().unwrap_or_default();
                while s.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(WireBody { args, kwargs, embed })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut body = WireBody { args: Vec::new(), kwargs: Vec::new(), embed: Embed::default() };
                while let Some(key) = m.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "args" => body.args = m.next_value::<Args<'de>>()?.0,
                        "kwargs" => body.kwargs = m.next_value::<KwArgs<'de>>()?.0,
                        "callbacks" => body.embed.callbacks = m.next_value()?,
                        "errbacks" => body.embed.errbacks = m.next_value()?,
                        "chain" => body.embed.chain = m.next_value()?,
                        "chord" => body.embed.chord = m.next_value()?,
                        _ => {
                            m.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(body)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(headers: Value, body: &str) -> TaskMessage {
        TaskMessage::json(serde_json::from_value(headers).unwrap(), Properties::default(), body.to_owned())
    }

    #[test]
    fn minimal_message_decodes_with_null_or_empty_embed() {
        for body in [r#"[[2, 3], {}, null]"#, r#"[[2, 3], {}, {}]"#, r#"[[2, 3], {}]"#] {
            let mut m = msg(json!({"task": "app2.add", "id": "x"}), body);
            let d = m.decode_body(&Accept::default()).unwrap();
            let b = d.parse().unwrap();
            assert_eq!(b.args.iter().map(|a| a.get()).collect::<Vec<_>>(), ["2", "3"]);
            assert!(b.embed.callbacks.is_none());
        }
    }

    #[test]
    fn args_are_borrowed_slices_and_kwargs_keep_names() {
        let mut m = msg(json!({"task": "t", "id": "x"}), r#"[[{"deep": [1, 2]}], {"y": "é\n"}, {"callbacks": null}]"#);
        let d = m.decode_body(&Accept::default()).unwrap();
        let b = d.parse().unwrap();
        assert_eq!(b.args[0].get(), r#"{"deep": [1, 2]}"#);
        assert_eq!(b.kwarg("y").unwrap().get(), r#""é\n""#);
        let base = d.as_bytes().as_ptr() as usize;
        let p = b.args[0].get().as_ptr() as usize;
        assert!(p >= base && p < base + d.as_bytes().len(), "args borrow the body bytes");
    }

    #[test]
    fn unknown_headers_survive_a_round_trip() {
        let h: Headers =
            serde_json::from_value(json!({"task": "t", "id": "i", "x-custom": "v", "redelivered": true})).unwrap();
        assert_eq!(h.extra["x-custom"], "v");
        let back = serde_json::to_value(&h).unwrap();
        assert_eq!(back["x-custom"], "v");
        assert_eq!(back["redelivered"], true);
    }

    #[test]
    fn protocol_v1_body_fills_the_headers() {
        let body = r#"{"task": "app1.add", "id": "a452", "args": [2, 3], "kwargs": {}, "group": null, "retries": 0,
            "eta": "2026-11-21T05:24:52.021256+00:00", "expires": null, "utc": true, "callbacks": null, "errbacks": null,
            "timelimit": [null, null], "taskset": "g1", "chord": null}"#;
        let mut m = TaskMessage::json(Headers::new("", ""), Properties::default(), body.to_owned());
        m.headers.root_id = None;
        let d = m.decode_body(&Accept::default()).unwrap();
        assert_eq!(m.headers.task, "app1.add");
        assert_eq!(m.headers.id, "a452");
        assert_eq!(m.headers.group.as_deref(), Some("g1"));
        assert_eq!(m.headers.eta.as_deref(), Some("2026-11-21T05:24:52.021256+00:00"));
        assert_eq!(d.parse().unwrap().args.len(), 2);
    }

    #[test]
    fn encode_then_decode_in_every_serializer_and_compression() {
        let args = vec![json!(2), json!("two")];
        let mut kwargs = Map::new();
        kwargs.insert("k".into(), json!([1, 2]));
        let accept = Accept::from_names(&["json", "msgpack", "yaml", "pickle"]).unwrap();
        for ct in [ContentType::Json, ContentType::MsgPack, ContentType::Yaml, ContentType::Pickle] {
            for comp in [None, Some(Compression::Zlib), Some(Compression::Zstd)] {
                let mut m = TaskMessage::encode(
                    Headers::new("t", "i"),
                    Properties::default(),
                    ct,
                    comp,
                    &args,
                    &kwargs,
                    &Embed::default(),
                )
                .unwrap();
                let d = m.decode_body(&accept).unwrap();
                let b = d.parse().unwrap();
                assert_eq!(b.args_value(), args, "{ct:?} {comp:?}");
                assert_eq!(b.kwargs_value(), kwargs);
            }
        }
    }

    #[test]
    fn a_disallowed_or_broken_body_is_a_typed_error() {
        let mut m = msg(json!({"task": "t", "id": "i"}), "[[1], {}, null]");
        m.content_type = "application/x-python-serialize".into();
        assert!(matches!(m.decode_body(&Accept::default()), Err(ProtocolError::ContentDisallowed { .. })));
        let mut m = msg(json!({"task": "t", "id": "i"}), "[[1], {");
        let d = m.decode_body(&Accept::default()).unwrap();
        assert!(matches!(d.parse(), Err(ProtocolError::Malformed(_))));
        let mut m = msg(json!({"id": "i"}), "[[1], {}, null]");
        assert!(m.decode_body(&Accept::default()).is_err());
        // Not UTF-8: inside a borrowed arg, inside a kwarg name, after the body.
        for bad in [&b"[[\"\xff\"], {}, null]"[..], b"[[1], {\"\xfe\": 1}, null]", b"[[1], {}, null]\xff"] {
            let mut m = msg(json!({"task": "t", "id": "i"}), "");
            m.body = Bytes::copy_from_slice(bad);
            let d = m.decode_body(&Accept::default()).unwrap();
            assert!(d.parse().is_err(), "{bad:?}");
        }
    }
}
