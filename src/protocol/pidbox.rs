//! Remote-control (pidbox) shapes (`kombu/pidbox.py`): the broadcast request body and the
//! per-node reply body.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a reply goes: exchange `reply.celery.pidbox`, routing key = the requester's oid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyTo {
    /// The exchange replies go to (`reply.celery.pidbox`).
    pub exchange: String,
    /// The routing key of the caller's reply queue (its ticket).
    pub routing_key: String,
}

/// A control/inspect request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// The command: `ping`, `stats`, `revoke`, …
    pub method: String,
    /// The command's arguments.
    #[serde(default)]
    pub arguments: Map<String, Value>,
    /// The nodes it is for (empty or `None`: all).
    #[serde(default)]
    pub destination: Option<Vec<String>>,
    /// A node name pattern, with `matcher`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// How `pattern` matches: `glob` (default) or `pcre`.
    #[serde(default)]
    pub matcher: Option<String>,
    /// Present only when a reply is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Where replies go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

impl ControlRequest {
    /// Whether the node `nodename` should handle this request (destination list, else
    /// glob pattern, else everyone). PCRE patterns are matched as plain equality.
    pub fn is_for(&self, nodename: &str) -> bool {
        if let Some(dest) = self.destination.as_ref().filter(|d| !d.is_empty()) {
            return dest.iter().any(|d| d == nodename);
        }
        match (&self.pattern, self.matcher.as_deref()) {
            (Some(p), Some("glob")) => glob_match(p, nodename),
            (Some(p), Some(_)) => p == nodename,
            _ => true,
        }
    }
}

/// A reply body: `{nodename: value}`.
pub type ControlReply = Map<String, Value>;

fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ping_capture_reads_and_matches_its_node() {
        let r: ControlRequest = serde_json::from_value(json!({"method": "ping", "arguments": {}, "destination": ["w1@digest"],
            "pattern": null, "matcher": null, "ticket": "858a6172", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "8bfa"}}))
        .unwrap();
        assert!(r.is_for("w1@digest") && !r.is_for("w2@digest"));
        let glob =
            ControlRequest { destination: None, pattern: Some("w*@d?gest".into()), matcher: Some("glob".into()), ..r };
        assert!(glob.is_for("w9@digest") && !glob.is_for("x@digest"));
    }
}
