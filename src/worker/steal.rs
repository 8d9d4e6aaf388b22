//! Cross-shard work stealing. Each shard keeps its reserved-but-not-started deliveries in a
//! lock-free deque; an idle shard takes a bounded batch from a busy one. A bare queue does not
//! wake a parked executor, so a shard that reserves work while a peer is idle notifies that peer.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_deque::{Steal, Stealer, Worker as LocalQueue};

use crate::rt::Notify;
use crate::transport::Delivery;

/// What all shards share for stealing and waking each other.
pub(crate) struct StealSet {
    stealers: Vec<Stealer<Delivery>>,
    idle: Vec<AtomicBool>,
    /// Each shard's wake-up: new local work, a free slot, a peer with work, shutdown.
    pub(crate) wake: Vec<Notify>,
    enabled: bool,
}

impl StealSet {
    /// Creates the deques for `n` shards; returns the shared set and each shard's local end.
    pub(crate) fn new(n: usize, enabled: bool) -> (Self, Vec<LocalQueue<Delivery>>) {
        let locals: Vec<LocalQueue<Delivery>> = (0..n).map(|_| LocalQueue::new_fifo()).collect();
        let set = StealSet {
            stealers: locals.iter().map(LocalQueue::stealer).collect(),
            idle: (0..n).map(|_| AtomicBool::new(false)).collect(),
            wake: (0..n).map(|_| Notify::new()).collect(),
            enabled,
        };
        (set, locals)
    }

    pub(crate) fn set_idle(&self, shard: usize, idle: bool) {
        self.idle[shard].store(idle, Ordering::SeqCst);
    }

    /// Called by a shard that holds reserved work it has not started: wakes idle peers.
    pub(crate) fn offer(&self, from: usize) {
        if !self.enabled {
            return;
        }
        for (i, idle) in self.idle.iter().enumerate() {
            if i != from && idle.load(Ordering::SeqCst) {
                self.wake[i].notify();
            }
        }
    }

    /// Moves up to half of a peer's reserved deliveries (crossbeam caps a batch) into `local`
    /// and pops one to run.
    pub(crate) fn steal_into(&self, me: usize, local: &LocalQueue<Delivery>) -> Option<Delivery> {
        if !self.enabled {
            return None;
        }
        let n = self.stealers.len();
        for k in 1..n {
            let victim = (me + k) % n;
            loop {
                match self.stealers[victim].steal_batch_and_pop(local) {
                    Steal::Success(d) => return Some(d),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }
}
