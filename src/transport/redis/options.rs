//! kombu's Redis transport options (`broker_transport_options`), read and checked by this
//! transport: the config keeps them as the table the user wrote.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// kombu 5.7's Redis channel options that celeriac accepts but does not act on (its connections
/// and fanout are its own): a Python config that sets them works unchanged.
const KOMBU_IGNORED: [&str; 20] = [
    "body_encoding",
    "deadletter_queue",
    "ack_emulation",
    "unacked_key",
    "unacked_index_key",
    "unacked_mutex_key",
    "unacked_mutex_expire",
    "unacked_restore_limit",
    "unacked_restore_interval",
    "unacked_restore_throttle",
    "fanout_prefix",
    "fanout_patterns",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_keepalive_options",
    "max_connections",
    "health_check_interval",
    "retry_on_timeout",
    "client_name",
];

/// kombu's key separator between a queue name and its priority bucket.
const SEP: &str = "\x06\x16";

/// Redis transport options celeriac honours (kombu names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportOptions {
    /// Seconds before an unacked message is restored to its queue (kombu default 3600).
    pub visibility_timeout: u64,
    /// Prefix of every key and channel.
    pub global_keyprefix: String,
    /// Priority buckets (kombu default `[0, 3, 6, 9]`).
    pub priority_steps: Vec<u8>,
    /// Separator between queue name and bucket.
    pub sep: String,
    /// `round_robin` (default, kombu's rotation after each pop) or `priority` (queue order fixed).
    pub queue_order_strategy: String,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            visibility_timeout: 3600,
            global_keyprefix: String::new(),
            priority_steps: vec![0, 3, 6, 9],
            sep: SEP.to_owned(),
            queue_order_strategy: "round_robin".to_owned(),
        }
    }
}

impl TransportOptions {
    /// Reads `broker_transport_options` as written: kombu's Redis options, those celeriac does
    /// not act on accepted (and named in the log), anything else an error naming it, as is a
    /// value of the wrong type or out of range.
    pub fn from_table(table: &Map<String, Value>) -> Result<Self, String> {
        let mut ours = Map::new();
        for (k, v) in table {
            if KOMBU_IGNORED.contains(&k.as_str()) {
                tracing::debug!("broker_transport_options: {k} is a kombu Redis option celeriac does not use; ignored");
            } else {
                ours.insert(k.clone(), v.clone());
            }
        }
        let opts: TransportOptions = serde_json::from_value(Value::Object(ours)).map_err(|e| e.to_string())?;
        opts.validate()?;
        Ok(opts)
    }

    /// Checks the options; the error names the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.visibility_timeout == 0 {
            return Err("visibility_timeout must be at least 1 second".into());
        }
        if self.priority_steps.is_empty()
            || self.priority_steps[0] != 0
            || self.priority_steps.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(format!("priority_steps must start at 0 and increase, got {:?}", self.priority_steps));
        }
        if !matches!(self.queue_order_strategy.as_str(), "round_robin" | "priority" | "sorted") {
            return Err(format!("queue_order_strategy {:?}: use round_robin or priority", self.queue_order_strategy));
        }
        Ok(())
    }

    /// `visibility_timeout` (default one hour).
    pub fn visibility(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_python_config_reads_and_typos_are_named() {
        let t = json!({"visibility_timeout": 30, "max_connections": 20, "fanout_patterns": true});
        let o = TransportOptions::from_table(t.as_object().unwrap()).unwrap();
        assert_eq!(o.visibility_timeout, 30);
        let e = TransportOptions::from_table(json!({"visiblity_timeout": 30}).as_object().unwrap()).unwrap_err();
        assert!(e.contains("visiblity_timeout"), "{e}");
        let e = TransportOptions::from_table(json!({"visibility_timeout": 0}).as_object().unwrap()).unwrap_err();
        assert!(e.contains("visibility_timeout"), "{e}");
    }
}
