//! Events (`celery/events/event.py`): a flat JSON object with the dispatcher's common fields
//! (`type`, `hostname`, `timestamp`, `utcoffset`, `pid`, `clock`) and the event's own fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One event. A `task.multi` message body is a JSON list of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event type: `task-succeeded`, `worker-heartbeat`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The sending node.
    pub hostname: String,
    /// When it was sent (UNIX seconds).
    pub timestamp: f64,
    /// Hours west of UTC, a float since 5.7.
    #[serde(default)]
    pub utcoffset: f64,
    /// The sending process.
    #[serde(default)]
    pub pid: u32,
    /// The sender's Lamport clock.
    #[serde(default)]
    pub clock: u64,
    /// The type's own fields (`uuid`, `runtime`, `freq`, …).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    /// The routing key Celery uses: the type with `-` replaced by `.` (`task.succeeded`).
    pub fn routing_key(&self) -> String {
        self.kind.replace('-', ".")
    }

    /// The group (`task`, `worker`) the type belongs to.
    pub fn group(&self) -> &str {
        self.kind.split('-').next().unwrap_or("")
    }

    /// Decodes a message body that holds one event or a `task.multi` batch.
    pub fn decode_batch(body: &Value) -> Result<Vec<Event>, serde_json::Error> {
        match body {
            Value::Array(items) => items.iter().map(Event::deserialize).collect(),
            other => Ok(vec![Event::deserialize(other)?]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heartbeat_capture_reads() {
        let v = json!({"hostname": "w1@digest", "utcoffset": 0.0, "pid": 12804, "clock": 2, "freq": 2.0, "active": 0,
            "processed": 0, "loadavg": [0.21, 0.25, 0.12], "sw_ident": "py-celery", "sw_ver": "5.7.0", "sw_sys": "Linux",
            "timestamp": 1795238482.7647395, "type": "worker-heartbeat"});
        let e = &Event::decode_batch(&v).unwrap()[0];
        assert_eq!(e.routing_key(), "worker.heartbeat");
        assert_eq!(e.group(), "worker");
        assert_eq!(e.fields["freq"], json!(2.0));
        assert_eq!(Event::decode_batch(&json!([v.clone(), v])).unwrap().len(), 2);
    }
}
