//! A delivered message and its acknowledgement. Acking or rejecting consumes the delivery, so a
//! message cannot be settled twice; a delivery is `Send`, so an idle shard can steal it.

use std::sync::Arc;

use crate::protocol::{DeliveryInfo, TaskMessage};

use super::memory::Link;
use super::redis::RedisAck;

/// Who settles the delivery.
#[derive(Debug)]
pub(crate) enum AckTarget {
    Memory(Arc<Link>),
    Redis(RedisAck),
}

/// A task message handed to a worker, unacked until settled.
#[derive(Debug)]
pub struct Delivery {
    pub message: Box<TaskMessage>,
    pub info: DeliveryInfo,
    /// The queue it was taken from.
    pub queue: Arc<str>,
    pub(crate) target: AckTarget,
}

impl Delivery {
    /// Splits the delivery into the message (to decode and run) and its settlement handle.
    pub fn into_parts(self) -> (Box<TaskMessage>, Settle) {
        let settle = Settle { info: self.info, queue: self.queue, target: self.target };
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
    /// context takes it when the task runs, settling needs only the queue and the target.
    pub info: DeliveryInfo,
    pub queue: Arc<str>,
    target: AckTarget,
}

impl Settle {
    /// Acknowledges: the message is done.
    pub fn ack(self) {
        match self.target {
            AckTarget::Memory(b) => b.settled(),
            AckTarget::Redis(r) => r.ack(),
        }
    }

    /// Leaves the message unacked with the broker, which delivers it again later (Redis: kombu's
    /// visibility restore; AMQP: when the channel closes), as it would after a crash. For a
    /// message whose outcome could not be recorded.
    pub fn abandon(self) {
        match self.target {
            // In-process: nothing outlives the broker to deliver it again, so it counts as done.
            AckTarget::Memory(b) => b.settled(),
            AckTarget::Redis(r) => r.abandon(),
        }
    }

    /// Rejects without requeue: the message is dropped (kombu: same as ack).
    pub fn reject(self) {
        self.ack()
    }

    /// Rejects with requeue: the message goes back to its queue, marked redelivered, and is
    /// consumed next (kombu's restore puts it at the consuming end).
    pub fn requeue(self, mut msg: Box<TaskMessage>) {
        msg.headers.extra.insert("redelivered".into(), serde_json::Value::Bool(true));
        match self.target {
            AckTarget::Memory(b) => b.restore(&self.queue, msg),
            AckTarget::Redis(r) => r.requeue(),
        }
    }
}
