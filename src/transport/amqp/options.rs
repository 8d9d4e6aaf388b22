//! The queue settings the AMQP transport declares with (Celery's `task_queue_max_priority`,
//! `task_default_queue_type`) and the transport options it reads.

use serde_json::{Map, Value};

/// How queues are declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpOptions {
    /// `x-max-priority` of declared queues (`task_queue_max_priority`): RabbitMQ honours message
    /// priorities only on such queues, higher first.
    pub max_priority: Option<u8>,
    /// Declare quorum queues (`task_default_queue_type = "quorum"`).
    pub quorum: bool,
}

/// kombu's pyamqp transport options that celeriac accepts without acting on them (connection
/// tuning its own client does not need).
const ACCEPTED: &[&str] = &["confirm_publish", "connect_timeout", "read_timeout", "write_timeout", "client_properties"];

/// Options of kombu's virtual transports and of Celery itself that a config written for Redis
/// may carry and that mean nothing on AMQP.
const GENERIC: &[&str] = &[
    "visibility_timeout",
    "global_keyprefix",
    "priority_steps",
    "sep",
    "queue_order_strategy",
    "max_retries",
    "interval_start",
    "interval_step",
    "interval_max",
    "polling_interval",
];

impl AmqpOptions {
    /// Checks `broker_transport_options` for the AMQP transport: a known option with a value of
    /// the wrong type, or an option no AMQP transport has, is refused with its name.
    pub fn from_table(opts: &Map<String, Value>, max_priority: Option<u8>, queue_type: &str) -> Result<Self, String> {
        for k in opts.keys() {
            if !ACCEPTED.contains(&k.as_str()) && !GENERIC.contains(&k.as_str()) {
                return Err(format!("{k:?} is not an option of the AMQP transport"));
            }
        }
        let quorum = match queue_type {
            "classic" => false,
            "quorum" => true,
            other => return Err(format!("task_default_queue_type {other:?}: expected \"classic\" or \"quorum\"")),
        };
        Ok(AmqpOptions { max_priority, quorum })
    }
}
