//! A delivered message and its acknowledgement. Acking or rejecting consumes the delivery, so a
//! message cannot be settled twice; a delivery is `Send`, so an idle shard can steal it, and its
//! settlement goes back to whoever the transport says owns it (on Redis, the shard that popped
//! it: its connection sent the stash the ack must follow).

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::{DeliveryInfo, TaskMessage};

/// The broker side of settling, implemented by each transport for the owner of its deliveries
/// (the memory broker's consumer link, a Redis consumer's settlement inbox). From any thread.
pub(crate) trait Settler: Send + Sync + std::fmt::Debug {
    /// The message is done (or rejected without requeue: the same on Redis).
    fn ack(&self, key: DeliveryKey);
    /// The message goes back to `queue`, consumed next, marked redelivered.
    fn requeue(&self, key: DeliveryKey, queue: &str, msg: Box<TaskMessage>);
    /// The message stays unacked with the broker, to be delivered again later.
    fn abandon(&self, key: DeliveryKey);
}

/// What the broker needs to find one delivery again: its tag (Redis: the `unacked` field) and,
/// for a requeue without the decoded message, the message as it arrived and its priority.
/// Empty for the in-process broker.
#[derive(Debug, Default)]
pub(crate) struct DeliveryKey {
    pub(crate) tag: String,
    pub(crate) raw: Bytes,
    pub(crate) priority: u8,
    /// AMQP: the delivery tag on the owner's consuming channel, and which connection of the
    /// owner's it came on (an ack for an older one is void: RabbitMQ requeued it then).
    pub(crate) number: u64,
    pub(crate) generation: u64,
}

/// A task message handed to a worker, unacked until settled.
#[derive(Debug)]
pub struct Delivery {
    /// The task message.
    pub message: Box<TaskMessage>,
    /// Where it was published.
    pub info: DeliveryInfo,
    /// The queue it was taken from.
    pub queue: Arc<str>,
    pub(crate) settler: Arc<dyn Settler>,
    pub(crate) key: DeliveryKey,
}

impl Delivery {
    /// Splits the delivery into the message (to decode and run) and its settlement handle.
    pub fn into_parts(self) -> (Box<TaskMessage>, Settle) {
        let settle = Settle { info: self.info, queue: self.queue, settler: self.settler, key: self.key };
        (self.message, settle)
    }

    /// Returns the delivery to its queue for another consumer, marked redelivered.
    pub fn requeue(self) {
        let (msg, settle) = self.into_parts();
        settle.requeue(msg);
    }
}

/// The right to ack or reject one delivery, detached from its message so the message can be
/// consumed while execution runs. Settling consumes it.
#[derive(Debug)]
pub struct Settle {
    /// Where the message came from, carried with it while it waits (ETA, rate limit); the task
    /// context takes it when the task runs, settling needs only the queue and the owner.
    pub info: DeliveryInfo,
    /// The queue it was taken from.
    pub queue: Arc<str>,
    settler: Arc<dyn Settler>,
    key: DeliveryKey,
}

impl Settle {
    /// Acknowledges: the message is done.
    pub fn ack(self) {
        self.settler.ack(self.key)
    }

    /// Leaves the message unacked with the broker, which delivers it again later (Redis: kombu's
    /// visibility restore; AMQP: when the channel closes), as it would after a crash. For a
    /// message whose outcome could not be recorded. The in-process broker has nobody to deliver
    /// it again once the process is gone, so there it counts as done.
    pub fn abandon(self) {
        self.settler.abandon(self.key)
    }

    /// Rejects without requeue: the message is dropped (kombu: same as ack).
    pub fn reject(self) {
        self.ack()
    }

    /// Rejects with requeue: the message goes back to its queue, marked redelivered, and is
    /// consumed next (kombu's restore puts it at the consuming end).
    pub fn requeue(self, mut msg: Box<TaskMessage>) {
        msg.headers.extra.insert("redelivered".into(), serde_json::Value::Bool(true));
        self.settler.requeue(self.key, &self.queue, msg)
    }
}
