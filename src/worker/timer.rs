//! A shard's timer: deliveries held until a moment — ETA/countdown tasks until their time,
//! rate-limited tasks until their bucket has a token. Held deliveries stay unacked (they come
//! back after a crash) and outside the prefetch window, as in Celery.
//!
//! A binary heap keyed by deadline rather than a hashed timing wheel: insert and pop are
//! O(log n) — about 17 comparisons of an `(Instant, u64)` at 100,000 held — with no tick, no
//! cascading and exact deadlines; one timer task per shard sleeps until the earliest one. With
//! 100,000 held, ordinary round trips stay at their idle figures (`perf/harness.rs --scenario
//! eta`), so a wheel's O(1) would buy nothing measurable. Entries are boxed so sifting moves 24
//! bytes, not the message.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::{DecodedBody, TaskMessage};
use crate::rt::Notify;
use crate::task::TaskEntry;
use crate::transport::Settle;

/// Why a delivery is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldKind {
    /// Its ETA/countdown is in the future.
    Eta,
    /// Its task type's rate limit has no token yet.
    RateLimit,
}

/// A decoded delivery waiting for its moment.
pub(crate) struct Held {
    pub entry: Arc<TaskEntry>,
    pub msg: Box<TaskMessage>,
    pub body: DecodedBody,
    pub settle: Settle,
    pub kind: HoldKind,
}

struct Slot {
    at: Instant,
    seq: u64,
    held: Box<Held>,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    // Reversed: `BinaryHeap` is a max-heap and the earliest deadline must come out first; `seq`
    // keeps equal deadlines in arrival order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One shard's held deliveries.
#[derive(Default)]
pub(crate) struct Timer {
    heap: RefCell<BinaryHeap<Slot>>,
    seq: Cell<u64>,
    eta: Cell<usize>,
    rate_limited: Cell<usize>,
    /// Bumped when the earliest deadline moves earlier, so the timer task re-arms.
    pub changed: Notify,
}

impl Timer {
    /// Holds `held` until `at`.
    pub(super) fn hold(&self, at: Instant, held: Held) {
        let counter = self.counter(held.kind);
        counter.set(counter.get() + 1);
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let mut heap = self.heap.borrow_mut();
        let earlier = heap.peek().is_none_or(|s| at < s.at);
        heap.push(Slot { at, seq, held: Box::new(held) });
        drop(heap);
        if earlier {
            self.changed.notify();
        }
    }

    /// The next delivery whose time has come.
    pub(super) fn pop_due(&self, now: Instant) -> Option<Held> {
        let mut heap = self.heap.borrow_mut();
        if heap.peek().is_none_or(|s| s.at > now) {
            return None;
        }
        let held = *heap.pop()?.held;
        drop(heap);
        let counter = self.counter(held.kind);
        counter.set(counter.get() - 1);
        Some(held)
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.heap.borrow().peek().map(|s| s.at)
    }

    /// Everything held, for returning to the broker at shutdown.
    pub(super) fn take_all(&self) -> Vec<Held> {
        self.eta.set(0);
        self.rate_limited.set(0);
        std::mem::take(&mut *self.heap.borrow_mut()).into_iter().map(|s| *s.held).collect()
    }

    /// What is held, soonest first, for `inspect scheduled` (`f` sees each once).
    pub(super) fn each_held(&self, mut f: impl FnMut(&Held)) {
        let heap = self.heap.borrow();
        let mut slots: Vec<&Slot> = heap.iter().collect();
        slots.sort_by_key(|s| (s.at, s.seq));
        for s in slots {
            f(&s.held);
        }
    }

    /// ETA/countdown tasks held.
    pub(super) fn eta_count(&self) -> usize {
        self.eta.get()
    }

    /// Rate-limited tasks held.
    pub(super) fn rate_limited_count(&self) -> usize {
        self.rate_limited.get()
    }

    fn counter(&self, kind: HoldKind) -> &Cell<usize> {
        match kind {
            HoldKind::Eta => &self.eta,
            HoldKind::RateLimit => &self.rate_limited,
        }
    }
}
