//! The JSON envelope of kombu's virtual transports (Redis lists, Redis PUBLISH, filesystem):
//! body base64-encoded, `content-type`/`content-encoding` with hyphens, properties with
//! `delivery_info`, `body_encoding` and a per-publish `delivery_tag`.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Headers, Properties, ProtocolError, TaskMessage};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Where a message was published: exchange and routing key (`""` = the anonymous exchange).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    /// The exchange the message was published to (empty: the default exchange).
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether a broker delivered it before (a restore or a requeue).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redelivered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EnvelopeProperties {
    #[serde(flatten)]
    base: Properties,
    delivery_info: DeliveryInfo,
    #[serde(default)]
    body_encoding: Option<String>,
    delivery_tag: String,
}

/// A kombu envelope with headers of type `H` ([`Headers`] for tasks, a plain object for events
/// and pidbox messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<H = Map<String, Value>> {
    body: String,
    #[serde(rename = "content-encoding")]
    content_encoding: String,
    #[serde(rename = "content-type")]
    content_type: String,
    headers: H,
    properties: EnvelopeProperties,
}

impl Envelope<Headers> {
    /// Reads an envelope whose task headers did not decode ([`Envelope::decode`] failed): the
    /// headers that read are kept and the others named in [`Headers::malformed`], so the message
    /// can be failed by id instead of vanishing. Errors only when the rest is not an envelope.
    pub fn decode_lenient(raw: &[u8]) -> Result<Self, ProtocolError> {
        let mut v: Value =
            serde_json::from_slice(raw).map_err(|e| ProtocolError::Malformed(format!("kombu envelope: {e}")))?;
        let headers = match v.get_mut("headers").map(Value::take) {
            Some(Value::Object(m)) => m,
            _ => return Err(ProtocolError::Malformed("kombu envelope: headers are not an object".into())),
        };
        v["headers"] = Value::Object(Map::new());
        let mut env: Envelope<Headers> =
            serde_json::from_value(v).map_err(|e| ProtocolError::Malformed(format!("kombu envelope: {e}")))?;
        env.headers = Headers::lenient(headers);
        Ok(env)
    }
}

impl<H: Serialize + serde::de::DeserializeOwned> Envelope<H> {
    /// Wraps body bytes (already serialized and compressed) for publishing.
    pub fn new(
        headers: H,
        properties: Properties,
        content_type: &str,
        content_encoding: &str,
        body: &[u8],
        delivery_info: DeliveryInfo,
        delivery_tag: String,
    ) -> Self {
        Envelope {
            body: B64.encode(body),
            content_encoding: content_encoding.to_owned(),
            content_type: content_type.to_owned(),
            headers,
            properties: EnvelopeProperties {
                base: properties,
                delivery_info,
                body_encoding: Some("base64".to_owned()),
                delivery_tag,
            },
        }
    }

    /// Reads an envelope; anything that is not one is a typed error.
    pub fn decode(raw: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(raw).map_err(|e| ProtocolError::Malformed(format!("kombu envelope: {e}")))
    }

    /// Writes the envelope as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of JSON values always serializes")
    }

    /// The body bytes, base64-decoded when `body_encoding` says so.
    pub fn body(&self) -> Result<Vec<u8>, ProtocolError> {
        match self.properties.body_encoding.as_deref() {
            Some("base64") => B64
                .decode(&self.body)
                .map_err(|e| ProtocolError::Malformed(format!("envelope body is not base64: {e}"))),
            _ => Ok(self.body.clone().into_bytes()),
        }
    }

    /// The message headers.
    pub fn headers(&self) -> &H {
        &self.headers
    }
    /// The message headers, to change.
    pub fn headers_mut(&mut self) -> &mut H {
        &mut self.headers
    }
    /// The body's content type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }
    /// kombu's delivery tag (a UUID on Redis).
    pub fn delivery_tag(&self) -> &str {
        &self.properties.delivery_tag
    }
    /// Where the message was published.
    pub fn delivery_info(&self) -> &DeliveryInfo {
        &self.properties.delivery_info
    }
    /// Where the message was published, to change.
    pub fn delivery_info_mut(&mut self) -> &mut DeliveryInfo {
        &mut self.properties.delivery_info
    }
    /// The message properties.
    pub fn properties(&self) -> &Properties {
        &self.properties.base
    }
}

impl<H: Serialize + serde::de::DeserializeOwned> Envelope<H> {
    /// A JSON message for `exchange` with `routing_key` and a fresh delivery tag: remote-control
    /// requests and replies, events.
    pub fn json(headers: H, properties: Properties, body: &[u8], exchange: &str, routing_key: &str) -> Self {
        let info = DeliveryInfo { exchange: exchange.into(), routing_key: routing_key.into(), redelivered: false };
        Envelope::new(headers, properties, "application/json", "utf-8", body, info, uuid::Uuid::new_v4().to_string())
    }
}

impl Envelope<Headers> {
    /// Wraps a task message.
    pub fn from_task(msg: &TaskMessage, delivery_info: DeliveryInfo, delivery_tag: String) -> Self {
        Envelope::new(
            msg.headers.clone(),
            msg.properties.clone(),
            &msg.content_type,
            &msg.content_encoding,
            &msg.body,
            delivery_info,
            delivery_tag,
        )
    }

    /// Unwraps the task message inside.
    pub fn into_task(self) -> Result<TaskMessage, ProtocolError> {
        let body = Bytes::from(self.body()?);
        Ok(TaskMessage {
            headers: self.headers,
            properties: self.properties.base,
            content_type: self.content_type,
            content_encoding: self.content_encoding,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = r#"{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d",
 "content-encoding": "utf-8", "content-type": "application/json",
 "headers": {"lang": "py", "task": "app2.add", "id": "7ac8a91d-40f1-4df9-9450-ecb61a3087bf", "shadow": null,
   "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null],
   "root_id": "7ac8a91d-40f1-4df9-9450-ecb61a3087bf", "parent_id": null, "argsrepr": "(2, 3)", "kwargsrepr": "{}",
   "origin": "gen12925@vm", "ignore_result": false, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}},
 "properties": {"correlation_id": "7ac8a91d-40f1-4df9-9450-ecb61a3087bf", "reply_to": "dc0477fe-230a-33d1-a73f-03498683e549",
   "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0,
   "body_encoding": "base64", "delivery_tag": "89ac4ab5-ecad-40f9-8031-d086dc564158"}}"#;

    #[test]
    fn the_protocol_md_capture_decodes_and_re_encodes_to_the_same_value() {
        let env = Envelope::<Headers>::decode(CAPTURED.as_bytes()).unwrap();
        assert_eq!(env.delivery_tag(), "89ac4ab5-ecad-40f9-8031-d086dc564158");
        assert_eq!(env.delivery_info().routing_key, "celery");
        let again: Value = serde_json::from_slice(&env.encode()).unwrap();
        assert_eq!(again, serde_json::from_str::<Value>(CAPTURED).unwrap());
        let msg = env.into_task().unwrap();
        assert_eq!(msg.headers.task, "app2.add");
        assert!(msg.body.starts_with(b"[[2, 3], {}"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Envelope::<Headers>::decode(b"not json").is_err());
        assert!(Envelope::<Headers>::decode(b"{\"body\": 1}").is_err());
    }
}
