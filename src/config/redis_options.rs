//! kombu's Redis transport options (`broker_transport_options`), as plain data.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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

    pub fn visibility(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout)
    }
}
