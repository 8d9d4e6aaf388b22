//! `memory://`: an in-process broker shared by every client and shard of one process.
//!
//! Each queue holds four lock-free FIFO buckets (kombu's priority steps; lower is served first)
//! and a bucket of restored messages served before them, so a requeued or returned delivery is
//! consumed next, as kombu's restore does. Publishers wake waiting consumers through the queue's
//! [`Notify`] — the one on the publisher's CPU if it waits, else all — which also wakes a parked
//! glommio shard from another thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crossbeam_queue::SegQueue;

use crate::protocol::{DeliveryInfo, TaskMessage};
use crate::rt::Notify;

use super::delivery::{Delivery, DeliveryKey, Settler};
use super::priority::priority_bucket;

#[derive(Debug, Default)]
struct MemQueue {
    // Boxed: a queue block then holds 31 pointers, not 31 × 700-byte messages, and the box
    // travels on through the delivery, the shard and the task context without being copied.
    restored: SegQueue<Box<TaskMessage>>,
    buckets: [SegQueue<Box<TaskMessage>>; 4],
    len: AtomicUsize,
    notify: Notify,
}

impl MemQueue {
    fn pop(&self) -> Option<Box<TaskMessage>> {
        let m = self.restored.pop().or_else(|| self.buckets.iter().find_map(SegQueue::pop))?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        Some(m)
    }
}

/// The in-process broker.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    queues: RwLock<HashMap<String, Arc<MemQueue>>>,
    /// Every consumer's unacked count, summed by [`MemoryBroker::unacked`].
    consumers: Mutex<Vec<Weak<Link>>>,
    published: AtomicU64,
    /// Fanout subscribers (exchange, sink); dropped receivers are pruned on publish.
    fanout: Mutex<Vec<(String, flume::Sender<Vec<u8>>)>>,
}

impl MemoryBroker {
    /// A broker with no queues yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn queue(&self, name: &str) -> Arc<MemQueue> {
        if let Some(q) = self.queues.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return q.clone();
        }
        self.queues.write().unwrap_or_else(|p| p.into_inner()).entry(name.to_owned()).or_default().clone()
    }

    /// Appends `msg` to `queue` in its priority bucket and wakes the queue's consumers.
    pub fn publish(&self, queue: &str, msg: TaskMessage) {
        let q = self.queue(queue);
        q.buckets[priority_bucket(msg.properties.priority)].push(Box::new(msg));
        q.len.fetch_add(1, Ordering::AcqRel);
        self.published.fetch_add(1, Ordering::Relaxed);
        q.notify.notify_near();
    }

    /// Delivers `envelope` to every subscriber of the fanout `exchange` in this process.
    pub fn publish_fanout(&self, exchange: &str, envelope: Vec<u8>) {
        let mut subs = self.fanout.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|(ex, tx)| ex != exchange || tx.send(envelope.clone()).is_ok());
    }

    /// Subscribes to the fanout `exchange`; ends when the receiver is dropped.
    pub fn subscribe_fanout(&self, exchange: &str) -> flume::Receiver<Vec<u8>> {
        let (tx, rx) = flume::unbounded();
        self.fanout.lock().unwrap_or_else(|p| p.into_inner()).push((exchange.to_owned(), tx));
        rx
    }

    /// Puts a delivered message back at the consuming end of `queue`.
    fn restore(&self, queue: &str, msg: Box<TaskMessage>) {
        let q = self.queue(queue);
        q.restored.push(msg);
        q.len.fetch_add(1, Ordering::AcqRel);
        q.notify.notify_near();
    }

    /// Messages waiting in `queue`.
    pub fn len(&self, queue: &str) -> usize {
        self.queues.read().unwrap_or_else(|p| p.into_inner()).get(queue).map_or(0, |q| q.len.load(Ordering::Acquire))
    }

    /// Drops every message waiting in `queue` (not those delivered); returns how many.
    pub fn purge(&self, queue: &str) -> usize {
        let q = self.queue(queue);
        std::iter::from_fn(|| q.pop()).count()
    }

    /// Delivered but not yet acked or rejected, over all queues.
    pub fn unacked(&self) -> usize {
        let mut consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.retain(|c| c.strong_count() > 0);
        consumers.iter().filter_map(Weak::upgrade).map(|c| c.unacked.load(Ordering::Acquire)).sum()
    }

    /// A consumer of `queues`, served round-robin.
    pub fn consumer(self: &Arc<Self>, queues: &[String]) -> MemoryConsumer {
        let link = Arc::new(Link { broker: self.clone(), unacked: AtomicUsize::new(0) });
        self.consumers.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(&link));
        MemoryConsumer {
            link,
            queues: queues.iter().map(|n| (Arc::<str>::from(n.as_str()), self.queue(n))).collect(),
            next: 0,
        }
    }
}

/// One consumer's tie to the broker, held by each of its deliveries until settled. Its own
/// unacked count (not one the broker keeps for all) means a shard settling a delivery writes no
/// cache line the other shards write; a delivery stolen by another shard still settles here.
#[derive(Debug)]
pub(crate) struct Link {
    broker: Arc<MemoryBroker>,
    unacked: AtomicUsize,
}

impl Link {
    fn settled(&self) {
        self.unacked.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Settler for Link {
    fn ack(&self, _: DeliveryKey) {
        self.settled();
    }

    /// Puts a delivered message back at the consuming end of `queue`.
    fn requeue(&self, _: DeliveryKey, queue: &str, msg: Box<TaskMessage>) {
        self.broker.restore(queue, msg);
        self.settled();
    }

    fn abandon(&self, _: DeliveryKey) {
        self.settled();
    }
}

/// One shard's consumer of the in-process broker.
pub struct MemoryConsumer {
    link: Arc<Link>,
    queues: Vec<(Arc<str>, Arc<MemQueue>)>,
    next: usize,
}

impl MemoryConsumer {
    /// Takes up to `max` messages without waiting, rotating over the queues.
    pub fn try_fetch(&mut self, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        let n = self.queues.len();
        if n == 0 {
            return out;
        }
        let mut idle = 0;
        while out.len() < max && idle < n {
            let (name, q) = &self.queues[self.next % n];
            match q.pop() {
                Some(message) => {
                    idle = 0;
                    self.link.unacked.fetch_add(1, Ordering::AcqRel);
                    out.push(Delivery {
                        info: DeliveryInfo {
                            exchange: String::new(),
                            routing_key: String::from(&**name),
                            redelivered: message.headers.extra.contains_key("redelivered"),
                        },
                        message,
                        queue: name.clone(),
                        settler: self.link.clone(),
                        key: DeliveryKey::default(),
                    });
                }
                None => {
                    idle += 1;
                    self.next = self.next.wrapping_add(1);
                }
            }
        }
        out
    }

    /// Consumes `queue` too, from the next fetch on.
    pub fn consume(&mut self, queue: &str) {
        if !self.queues.iter().any(|(n, _)| &**n == queue) {
            let q = self.link.broker.queue(queue);
            self.queues.push((Arc::from(queue), q));
        }
    }

    /// Stops consuming `queue`.
    pub fn cancel(&mut self, queue: &str) {
        self.queues.retain(|(n, _)| &**n != queue);
    }

    /// Waits for at least one message, then takes up to `max`; with no queue left to consume,
    /// until dropped.
    pub async fn fetch(&mut self, max: usize) -> Vec<Delivery> {
        loop {
            let seen: Vec<u64> = self.queues.iter().map(|(_, q)| q.notify.epoch()).collect();
            let got = self.try_fetch(max);
            if !got.is_empty() {
                return got;
            }
            if self.queues.is_empty() {
                std::future::pending::<()>().await;
            }
            let queues = self.queues.clone();
            Notify::any_changed(queues.iter().zip(seen).map(|((_, q), e)| (&q.notify, e)).collect()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Headers, Properties};

    fn msg(id: &str, priority: u8) -> TaskMessage {
        let props = Properties { priority, ..Properties::default() };
        TaskMessage::json(Headers::new("t", id), props, "[[], {}, null]")
    }

    #[test]
    fn fifo_within_a_priority_and_lower_numbers_first() {
        let b = MemoryBroker::new();
        b.publish("q", msg("a", 5));
        b.publish("q", msg("b", 0));
        b.publish("q", msg("c", 0));
        let mut c = b.consumer(&["q".into()]);
        let ids: Vec<String> = c.try_fetch(10).into_iter().map(|d| d.message.headers.id).collect();
        assert_eq!(ids, ["b", "c", "a"]);
        assert_eq!(b.unacked(), 3);
    }

    #[test]
    fn requeued_messages_come_back_first_and_marked() {
        let b = MemoryBroker::new();
        b.publish("q", msg("a", 0));
        b.publish("q", msg("b", 0));
        let mut c = b.consumer(&["q".into()]);
        let d = c.try_fetch(1).pop().unwrap();
        d.requeue();
        let first = c.try_fetch(1).pop().unwrap();
        assert_eq!(first.message.headers.id, "a");
        assert!(first.info.redelivered);
        let (_, settle) = first.into_parts();
        settle.ack();
        assert_eq!(b.unacked(), 0);
        assert_eq!(b.len("q"), 1);
    }
}
