//! Layer 2: brokers. A [`Broker`] is a shared, thread-safe handle used by clients to publish;
//! each worker shard opens its own [`Consumer`] from it. Transports are a closed set, so they are
//! an enum (static dispatch on the hot path) rather than trait objects.
//!
//! Available: `memory://` (in-process) and `redis://` (kombu's layout). AMQP plugs in as a
//! further variant.

mod delivery;
mod memory;
pub mod redis;

pub use delivery::{Delivery, Settle};
pub use memory::{MemoryBroker, MemoryConsumer};
pub use redis::{RedisBroker, RedisConsumer};

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
    Redis(Arc<RedisBroker>),
}

impl Broker {
    /// Publishes a task message to `queue`.
    pub fn publish(&self, queue: &str, msg: TaskMessage) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                b.publish(queue, msg);
                Ok(())
            }
            Broker::Redis(b) => b.publish(queue, &msg),
        }
    }

    /// Publishes many messages to one queue; on Redis pipelined in one round of writes.
    pub fn publish_batch(&self, queue: &str, msgs: Vec<TaskMessage>) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                for m in msgs {
                    b.publish(queue, m);
                }
                Ok(())
            }
            Broker::Redis(b) => b.publish_batch(queue, &msgs),
        }
    }

    /// Publishes without blocking a thread: the future runs on any executor.
    pub fn publish_async(
        &self,
        queue: &str,
        msg: TaskMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TransportError>> + Send>> {
        match self {
            Broker::Memory(b) => {
                b.publish(queue, msg);
                Box::pin(std::future::ready(Ok(())))
            }
            Broker::Redis(b) => Box::pin(b.publish_async(queue, &msg)),
        }
    }

    /// Publishes a kombu envelope on a fanout exchange (remote control, events): every current
    /// subscriber gets it, nobody else. From any thread.
    pub fn publish_fanout(&self, exchange: &str, routing_key: &str, envelope: Vec<u8>) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                b.publish_fanout(exchange, envelope);
                Ok(())
            }
            Broker::Redis(b) => b.publish_fanout(exchange, routing_key, envelope),
        }
    }

    /// Subscribes to a fanout exchange; returns once the subscription is live. Blocks the
    /// calling thread briefly on Redis (call it off the shards or via the blocking pool).
    pub fn subscribe_fanout(&self, exchange: &str) -> Fanout {
        match self {
            Broker::Memory(b) => Fanout::Memory(b.subscribe_fanout(exchange)),
            Broker::Redis(b) => Fanout::Redis(b.subscribe_fanout(exchange, "")),
        }
    }

    /// Opens a consumer of `queues` for one shard.
    pub fn consumer(&self, queues: &[String]) -> Consumer {
        match self {
            Broker::Memory(b) => Consumer::Memory(b.consumer(queues)),
            Broker::Redis(b) => Consumer::Redis(b.consumer(queues)),
        }
    }

    /// Messages waiting in `queue` (all priorities).
    pub fn queue_len(&self, queue: &str) -> Result<usize, TransportError> {
        match self {
            Broker::Memory(b) => Ok(b.len(queue)),
            Broker::Redis(b) => b.queue_len(queue),
        }
    }

    /// How long a delivered message may stay unacked before another consumer restores it
    /// (Redis `visibility_timeout`); `None` where unacked messages never time out.
    pub fn visibility_timeout(&self) -> Option<std::time::Duration> {
        match self {
            Broker::Memory(_) => None,
            Broker::Redis(b) => Some(b.keys.opts.visibility()),
        }
    }

    /// Whether the broker answers, from a thread outside the shards: `Err((fatal, why))`, where
    /// `fatal` says retrying cannot help (a refused password).
    pub fn check(&self) -> Result<(), (bool, String)> {
        match self {
            Broker::Memory(_) => Ok(()),
            Broker::Redis(b) => redis::check(&b.url),
        }
    }

    /// The URL this broker was opened from, for banners and logs.
    pub fn url(&self) -> String {
        match self {
            Broker::Memory(_) => "memory://".to_owned(),
            Broker::Redis(b) => b.url.redacted(),
        }
    }
}

/// A live fanout subscription; ends when dropped.
pub enum Fanout {
    Memory(flume::Receiver<Vec<u8>>),
    Redis(redis::FanoutSubscription),
}

impl Fanout {
    /// The next envelope, from any executor; `None` once the broker is gone.
    pub async fn recv_async(&self) -> Option<Vec<u8>> {
        match self {
            Fanout::Memory(rx) => rx.recv_async().await.ok(),
            Fanout::Redis(s) => s.recv_async().await.map(|(_, env)| env),
        }
    }
}

/// One shard's consumer.
pub enum Consumer {
    Memory(MemoryConsumer),
    Redis(RedisConsumer),
}

impl Consumer {
    /// Waits until at least one message is available (or [`Consumer::wake`] is called) and
    /// returns up to `max` deliveries; an empty vector means "woken, nothing to take".
    pub async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, TransportError> {
        match self {
            Consumer::Memory(c) => Ok(c.fetch(max).await),
            Consumer::Redis(c) => c.fetch(max).await,
        }
    }

    /// Whether a fetch sent to the broker is still unanswered: the next [`Consumer::fetch`]
    /// returns its messages, whatever `max` it is given.
    pub fn in_flight(&self) -> bool {
        match self {
            Consumer::Memory(_) => false,
            Consumer::Redis(c) => c.in_flight(),
        }
    }

    /// Stops consuming: deliveries still arriving are returned (to be requeued), and every
    /// settlement queued on this shard is flushed to the broker.
    pub async fn close(&mut self) -> Vec<Delivery> {
        match self {
            Consumer::Memory(_) => Vec::new(),
            Consumer::Redis(c) => c.close().await,
        }
    }

    /// Waits until settlements queued on this shard reached the broker.
    pub async fn flush(&self) {
        if let Consumer::Redis(c) = self {
            c.flush().await;
        }
    }
}

/// A broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("broker connection lost: {0}")]
    ConnectionLost(String),
    #[error("broker refused a command: {0}")]
    Server(String),
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
