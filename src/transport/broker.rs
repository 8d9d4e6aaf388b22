//! The transports as one enum each for the broker handle, a shard's consumer and a fanout
//! subscription: static dispatch, and the one file a new transport adds a variant to.

use std::sync::Arc;

use crate::config::QueueSpec;
use crate::protocol::TaskMessage;

use super::amqp::{self, AmqpBroker, AmqpConsumer};
use super::delivery::Delivery;
use super::error::TransportError;
use super::memory::{MemoryBroker, MemoryConsumer};
use super::redis::{self, RedisBroker, RedisConsumer};
use super::route::Route;

/// A broker connection factory shared by clients and worker shards.
#[derive(Clone, Debug)]
pub enum Broker {
    /// `memory://`: queues in this process.
    Memory(Arc<MemoryBroker>),
    /// `redis://`, `rediss://`, `redis+socket://`: kombu's Redis transport.
    Redis(Arc<RedisBroker>),
    /// `amqp://`, `amqps://`, `pyamqp://`: RabbitMQ.
    Amqp(Arc<AmqpBroker>),
}

impl Broker {
    /// Publishes a task message along `route`; waits until the broker has it.
    pub fn publish(&self, route: &Route, msg: TaskMessage) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                b.publish(route.target_queue(), msg);
                Ok(())
            }
            Broker::Redis(b) => b.publish(route, &msg),
            Broker::Amqp(b) => b.publish(route, msg),
        }
    }

    /// Publishes many messages along one route; on Redis pipelined in one round of writes.
    pub fn publish_batch(&self, route: &Route, msgs: Vec<TaskMessage>) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                for m in msgs {
                    b.publish(route.target_queue(), m);
                }
                Ok(())
            }
            Broker::Redis(b) => b.publish_batch(route, &msgs),
            Broker::Amqp(b) => b.publish_batch(route, msgs),
        }
    }

    /// Publishes without blocking a thread: the future runs on any executor.
    pub fn publish_async(
        &self,
        route: &Route,
        msg: TaskMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TransportError>> + Send>> {
        match self {
            Broker::Memory(b) => {
                b.publish(route.target_queue(), msg);
                Box::pin(std::future::ready(Ok(())))
            }
            Broker::Redis(b) => Box::pin(b.publish_async(route, &msg)),
            Broker::Amqp(b) => Box::pin(b.publish_async(route, msg)),
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
            Broker::Amqp(b) => b.publish_fanout(exchange, routing_key, &envelope),
        }
    }

    /// Publishes a kombu envelope to a direct exchange by routing key (remote-control replies).
    /// On Redis as kombu routes it; on RabbitMQ to the exchange (declared direct, not durable,
    /// as kombu declares `reply.celery.pidbox`); in memory:// to this process's subscribers.
    pub fn publish_direct(&self, exchange: &str, routing_key: &str, envelope: Vec<u8>) -> Result<(), TransportError> {
        match self {
            Broker::Memory(b) => {
                b.publish_fanout(&memory_direct(exchange, routing_key), envelope);
                Ok(())
            }
            Broker::Redis(b) => b.publish_direct(exchange, routing_key, envelope),
            Broker::Amqp(b) => b.publish_fanout(exchange, routing_key, &envelope),
        }
    }

    /// Subscribes to a fanout exchange; returns once the subscription is live. Blocks the
    /// calling thread briefly on Redis (call it off the shards or via the blocking pool).
    pub fn subscribe_fanout(&self, exchange: &str) -> Fanout {
        match self {
            Broker::Memory(b) => Fanout::Memory(b.subscribe_fanout(exchange)),
            Broker::Redis(b) => Fanout::Redis(b.subscribe_fanout(exchange, "")),
            Broker::Amqp(b) => Fanout::Amqp(b.subscribe_fanout(exchange)),
        }
    }

    /// Subscribes to the messages of a topic-like exchange whose routing keys match `pattern`
    /// (`#` for all: the event receiver). On Redis a `PSUBSCRIBE /<db>.<exchange>/<pattern>`; on
    /// RabbitMQ a queue bound with the pattern; memory:// has no routing keys.
    pub fn subscribe_topic(&self, exchange: &str, pattern: &str) -> Fanout {
        match self {
            Broker::Memory(b) => Fanout::Memory(b.subscribe_fanout(exchange)),
            Broker::Redis(b) => Fanout::Redis(b.subscribe_fanout(exchange, pattern)),
            Broker::Amqp(b) => Fanout::Amqp(b.subscribe_topic(exchange, pattern)),
        }
    }

    /// Binds `queue` to the direct `exchange` with `routing_key` and reads it until dropped: the
    /// reply queue of a remote-control client (`<oid>.reply.celery.pidbox`, key `<oid>`).
    /// Returns once a reply published from now on will be read.
    pub fn subscribe_queue(&self, exchange: &str, routing_key: &str, queue: &str) -> Fanout {
        match self {
            Broker::Memory(b) => Fanout::Memory(b.subscribe_fanout(&memory_direct(exchange, routing_key))),
            Broker::Redis(b) => Fanout::Bound(Box::new(b.subscribe_queue(exchange, routing_key, queue))),
            Broker::Amqp(b) => Fanout::Amqp(b.subscribe_queue(exchange, routing_key, queue)),
        }
    }

    /// Opens a consumer of `queues` for one shard.
    pub fn consumer(&self, queues: &[String]) -> Consumer {
        match self {
            Broker::Memory(b) => Consumer::Memory(b.consumer(queues)),
            Broker::Redis(b) => Consumer::Redis(b.consumer(queues)),
            Broker::Amqp(b) => Consumer::Amqp(b.consumer(queues)),
        }
    }

    /// Declares `queues` where the broker keeps declared entities (AMQP; elsewhere a queue
    /// exists once something is pushed to it). From outside the shards.
    pub fn declare_queues(&self, queues: &[String]) -> Result<(), TransportError> {
        match self {
            Broker::Memory(_) | Broker::Redis(_) => Ok(()),
            Broker::Amqp(b) => b.declare_queues(queues),
        }
    }

    /// Messages waiting in `queue` (all priorities).
    pub fn queue_len(&self, queue: &str) -> Result<usize, TransportError> {
        match self {
            Broker::Memory(b) => Ok(b.len(queue)),
            Broker::Redis(b) => b.queue_len(queue),
            Broker::Amqp(b) => b.queue_len(queue),
        }
    }

    /// Drops the messages waiting in `queue` (`celery purge`; delivered, unacked ones stay);
    /// returns how many. From outside the shards.
    pub fn purge(&self, queue: &str) -> Result<usize, TransportError> {
        match self {
            Broker::Memory(b) => Ok(b.purge(queue)),
            Broker::Redis(b) => b.purge(queue),
            Broker::Amqp(b) => b.purge(queue),
        }
    }

    /// How long a delivered message may stay unacked before another consumer restores it
    /// (Redis `visibility_timeout`); `None` where unacked messages never time out.
    pub fn visibility_timeout(&self) -> Option<std::time::Duration> {
        match self {
            Broker::Memory(_) | Broker::Amqp(_) => None,
            Broker::Redis(b) => Some(b.keys.opts.visibility()),
        }
    }

    /// Whether the broker answers, from a thread outside the shards: `Err((fatal, why))`, where
    /// `fatal` says retrying cannot help (a refused password).
    pub fn check(&self) -> Result<(), (bool, String)> {
        match self {
            Broker::Memory(_) => Ok(()),
            Broker::Redis(b) => redis::check(&b.url),
            Broker::Amqp(b) => amqp::check(&b.url),
        }
    }

    /// The URL this broker was opened from, for banners and logs.
    pub fn url(&self) -> String {
        match self {
            Broker::Memory(_) => "memory://".to_owned(),
            Broker::Redis(b) => b.url.redacted(),
            Broker::Amqp(b) => b.url.redacted(),
        }
    }
}

/// memory://'s direct routing: a fanout per exchange and routing key.
fn memory_direct(exchange: &str, routing_key: &str) -> String {
    format!("{exchange}\u{0}{routing_key}")
}

/// A live fanout subscription; ends when dropped.
pub enum Fanout {
    /// An in-process fanout subscription.
    Memory(flume::Receiver<Vec<u8>>),
    /// A Redis `PSUBSCRIBE`.
    Redis(redis::FanoutSubscription),
    /// A Redis list bound to a direct exchange.
    Bound(Box<redis::BoundQueue>),
    /// A RabbitMQ queue bound to the exchange.
    Amqp(amqp::AmqpSubscription),
}

impl Fanout {
    /// The next envelope, from any executor; `None` once the broker is gone.
    pub async fn recv_async(&self) -> Option<Vec<u8>> {
        match self {
            Fanout::Memory(rx) => rx.recv_async().await.ok(),
            Fanout::Redis(s) => s.recv_async().await.map(|(_, env)| env),
            Fanout::Bound(q) => q.recv_async().await,
            Fanout::Amqp(s) => s.recv_async().await,
        }
    }
}

/// One shard's consumer.
pub enum Consumer {
    /// A consumer of in-process queues.
    Memory(MemoryConsumer),
    /// A consumer of Redis lists.
    Redis(RedisConsumer),
    /// A consumer of RabbitMQ queues.
    Amqp(AmqpConsumer),
}

impl Consumer {
    /// Waits until at least one message is available (or the shard is woken to stop) and
    /// returns up to `max` deliveries; an empty vector means "woken, nothing to take".
    pub async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, TransportError> {
        match self {
            Consumer::Memory(c) => Ok(c.fetch(max).await),
            Consumer::Redis(c) => c.fetch(max).await,
            Consumer::Amqp(c) => c.fetch(max).await,
        }
    }

    /// Consumes `spec`'s queue too (declaring it where the broker keeps declarations), from
    /// the next fetch on; one consumed already stays as it is.
    pub fn consume(&mut self, spec: &QueueSpec) {
        match self {
            Consumer::Memory(c) => c.consume(&spec.name),
            Consumer::Redis(c) => c.consume(&spec.name),
            Consumer::Amqp(c) => c.consume(spec),
        }
    }

    /// Stops consuming `queue`: deliveries of it already on their way are still returned.
    /// With no queue left, a fetch waits until one is added (or the shard is woken).
    pub fn cancel(&mut self, queue: &str) {
        match self {
            Consumer::Memory(c) => c.cancel(queue),
            Consumer::Redis(c) => c.cancel(queue),
            Consumer::Amqp(c) => c.cancel(queue),
        }
    }

    /// Queues the broker refused to declare or consume since the last call (logged with the
    /// broker's words), no longer consumed; a fetch returns early when there are any.
    pub fn refused(&mut self) -> Vec<String> {
        match self {
            Consumer::Memory(_) | Consumer::Redis(_) => Vec::new(),
            Consumer::Amqp(c) => c.refused(),
        }
    }

    /// Whether a fetch sent to the broker is still unanswered: the next [`Consumer::fetch`]
    /// returns its messages, whatever `max` it is given.
    pub fn in_flight(&self) -> bool {
        match self {
            Consumer::Memory(_) => false,
            Consumer::Redis(c) => c.in_flight(),
            Consumer::Amqp(c) => c.in_flight(),
        }
    }

    /// Stops consuming: deliveries still arriving are returned (to be requeued), and every
    /// settlement queued on this shard is flushed to the broker.
    pub async fn close(&mut self) -> Vec<Delivery> {
        match self {
            Consumer::Memory(_) => Vec::new(),
            Consumer::Redis(c) => c.close().await,
            Consumer::Amqp(c) => c.close().await,
        }
    }

    /// Waits until settlements queued on this shard reached the broker.
    pub async fn flush(&self) {
        match self {
            Consumer::Memory(_) => {}
            Consumer::Redis(c) => c.flush().await,
            Consumer::Amqp(c) => c.flush().await,
        }
    }
}
