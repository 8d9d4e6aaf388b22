//! The Lamport clock every event carries (`kombu.clocks.LamportClock`): +1 per event sent,
//! `max(local, seen) + 1` per event or control message received.

use std::sync::atomic::{AtomicU64, Ordering};

/// A Lamport clock, shared by a process's senders.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// The value for the next event sent (`forward`).
    pub fn forward(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes in a clock seen on a received message (`adjust`).
    pub fn adjust(&self, seen: u64) -> u64 {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = cur.max(seen) + 1;
            match self.0.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(now) => cur = now,
            }
        }
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_and_adjusts() {
        let c = Clock::default();
        assert_eq!(c.forward(), 1);
        assert_eq!(c.adjust(10), 11);
        assert_eq!(c.adjust(3), 12);
        assert_eq!(c.value(), 12);
    }
}
