//! A consumer's settlement inbox: deliveries may run on any shard, but a transport settles them
//! where they were taken (Redis: after their stash on the popping shard's writer; AMQP: on the
//! channel they came on). Every shard queues its settlements here, and the owning shard's task
//! drains them once per scheduling round, so one round's settlements share one write.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::rt::Notify;

/// The inbox of one consumer, shared by every shard that may hold its deliveries.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    tx: flume::Sender<T>,
    rx: flume::Receiver<T>,
    wake: Notify,
    /// Deliveries taken and not yet settled by the owner.
    outstanding: AtomicUsize,
    /// Set once the consumer is closed and everything settled: the owner's task ends.
    closed: AtomicBool,
}

impl<T> Inbox<T> {
    pub(crate) fn new() -> Self {
        let (tx, rx) = flume::unbounded();
        Inbox { tx, rx, wake: Notify::new(), outstanding: AtomicUsize::new(0), closed: AtomicBool::new(false) }
    }

    /// Counts `n` deliveries taken: each must come back through [`Inbox::put`].
    pub(crate) fn taken(&self, n: usize) {
        self.outstanding.fetch_add(n, Ordering::AcqRel);
    }

    /// Queues a settlement for the owner; from any thread.
    pub(crate) fn put(&self, item: T) {
        // The receiver lives as long as `self`: a send cannot fail.
        let _ = self.tx.send(item);
        self.wake.notify();
    }

    /// The next queued settlement, if any (the owner's task).
    pub(crate) fn next(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// The owner sent `n` settlements on: counted only now, so a close waits for the write.
    pub(crate) fn settled(&self, n: usize) {
        if n > 0 {
            self.outstanding.fetch_sub(n, Ordering::AcqRel);
            self.wake.notify();
        }
    }

    /// What [`Inbox::changed`] waits past.
    pub(crate) fn epoch(&self) -> u64 {
        self.wake.epoch()
    }

    /// Until something was put or the inbox closed since `seen`.
    pub(crate) async fn changed(&self, seen: u64) {
        self.wake.changed(seen).await
    }

    /// Whether the owner's task should end: closed, and nothing left to send.
    pub(crate) fn finished(&self) -> bool {
        self.closed.load(Ordering::Acquire) && self.rx.is_empty()
    }

    /// Waits until every delivery taken was settled by the owner (those stolen by other shards
    /// included), then ends the owner's task. On the owner's shard.
    pub(crate) async fn close(&self) {
        loop {
            let seen = self.wake.epoch();
            if self.outstanding.load(Ordering::Acquire) == 0 && self.rx.is_empty() {
                break;
            }
            self.wake.changed(seen).await;
        }
        self.closed.store(true, Ordering::Release);
        self.wake.notify();
    }
}
