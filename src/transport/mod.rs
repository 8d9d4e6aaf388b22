//! Layer 2: brokers. A [`Broker`] is a shared, thread-safe handle used by clients to publish;
//! each worker shard opens its own [`Consumer`] from it. Transports are a closed set, so they are
//! an enum (static dispatch on the hot path) rather than trait objects.
//!
//! Available: `memory://` (in-process). Redis and AMQP plug in as further variants.

mod delivery;
mod memory;

pub use delivery::{Delivery, Settle};
pub use memory::{MemoryBroker, MemoryConsumer};

use std::sync::Arc;

use crate::protocol::TaskMessage;

/// Priority buckets as kombu's virtual transports use them (`priority_steps = [0, 3, 6, 9]`);
/// a lower number is served first, as on Redis.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// The bucket index for a message priority (0–9, clamped).
pub fn priority_bucket(priority: u8) -> usize {
    PRIORITY_STEPS.iter().rposition(|s| *s <= priority.min(9)).unwrap_or(0)
}

/// A broker connection factory shared by clients and worker shards.
#[derive(Clone, Debug)]
pub enum Broker {
    Memory(Arc<MemoryBroker>),
}

impl Broker {
    /// Publishes a task message to `queue`.
    pub fn publish(&self, queue: &str, msg: TaskMessage) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                b.publish(queue, msg);
                Ok(())
            }
        }
    }

    /// Opens a consumer of `queues` for one shard.
    pub fn consumer(&self, queues: &[String]) -> Consumer {
        match self {
            Broker::Memory(b) => Consumer::Memory(b.consumer(queues)),
        }
    }

    /// Messages waiting in `queue` (all priorities).
    pub fn queue_len(&self, queue: &str) -> usize {
        match self {
            Broker::Memory(b) => b.len(queue),
        }
    }

    /// The URL this broker was opened from, for banners and logs.
    pub fn url(&self) -> &str {
        match self {
            Broker::Memory(_) => "memory://",
        }
    }
}

/// One shard's consumer.
pub enum Consumer {
    Memory(MemoryConsumer),
}

impl Consumer {
    /// Waits until at least one message is available (or [`Consumer::wake`] is called) and
    /// returns up to `max` deliveries; an empty vector means "woken, nothing to take".
    pub async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, TransportError> {
        match self {
            Consumer::Memory(c) => Ok(c.fetch(max).await),
        }
    }

    /// Takes up to `max` deliveries without waiting.
    pub fn try_fetch(&mut self, max: usize) -> Result<Vec<Delivery>, TransportError> {
        match self {
            Consumer::Memory(c) => Ok(c.try_fetch(max)),
        }
    }
}

/// A broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("broker connection lost: {0}")]
    ConnectionLost(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_kombus_buckets() {
        let b: Vec<usize> = (0..=10).map(priority_bucket).collect();
        assert_eq!(b, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]);
    }
}
