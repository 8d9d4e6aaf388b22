//! The queue settings the AMQP transport declares with (Celery's `task_queues`,
//! `task_queue_max_priority`, `task_default_queue_type`,
//! `broker_native_delayed_delivery_queue_type`) and the transport options it reads.

use serde_json::{Map, Value};

use crate::config::QueueSpec;

/// How queues are declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpOptions {
    /// `x-max-priority` of declared queues (`task_queue_max_priority`): RabbitMQ honours message
    /// priorities only on such queues, higher first.
    pub max_priority: Option<u8>,
    /// Declare quorum queues unless a queue says otherwise (`task_default_queue_type = "quorum"`).
    pub quorum: bool,
    /// `task_queues`: each queue's exchange, its type and key, and its queue type.
    pub queues: Vec<QueueSpec>,
    /// The type of the native delayed delivery queues (`quorum` or `classic`).
    pub delayed_queue_type: String,
}

impl AmqpOptions {
    /// How `queue` is declared: its `task_queues` entry, or Celery's for a missing queue.
    pub fn spec(&self, queue: &str) -> QueueSpec {
        self.queues.iter().find(|q| q.name == queue).cloned().unwrap_or_else(|| QueueSpec::missing(queue))
    }

    /// Whether `spec` is a quorum queue.
    pub fn is_quorum(&self, spec: &QueueSpec) -> bool {
        spec.queue_type.as_deref().map_or(self.quorum, |t| t == "quorum")
    }

    /// Celery's `detect_quorum_queues`: any quorum queue turns native delayed delivery on (and
    /// global QoS off).
    pub fn any_quorum(&self) -> bool {
        self.quorum || self.queues.iter().any(|q| self.is_quorum(q))
    }

    /// The type of the exchange named `exchange`, as `task_queues` declares it (`direct` for
    /// any other).
    pub fn exchange_type(&self, exchange: &str) -> &str {
        self.queues.iter().find(|q| q.exchange_name() == exchange).map_or("direct", |q| q.exchange_type.as_str())
    }
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
    pub fn from_table(
        opts: &Map<String, Value>,
        max_priority: Option<u8>,
        queue_type: &str,
        queues: Vec<QueueSpec>,
        delayed_queue_type: &str,
    ) -> Result<Self, String> {
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
        let known = |t: &str| t == "classic" || t == "quorum";
        if !known(delayed_queue_type) {
            return Err(format!(
                "broker_native_delayed_delivery_queue_type {delayed_queue_type:?}: expected \"classic\" or \"quorum\""
            ));
        }
        for q in &queues {
            if let Some(t) = q.queue_type.as_deref().filter(|t| !known(t)) {
                return Err(format!("task_queues {:?}: queue_type {t:?}: expected \"classic\" or \"quorum\"", q.name));
            }
            if !["direct", "topic", "fanout", "headers"].contains(&q.exchange_type.as_str()) {
                return Err(format!(
                    "task_queues {:?}: exchange_type {:?} is not an AMQP exchange type",
                    q.name, q.exchange_type
                ));
            }
        }
        Ok(AmqpOptions { max_priority, quorum, queues, delayed_queue_type: delayed_queue_type.to_owned() })
    }
}
