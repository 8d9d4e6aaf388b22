//! The remote-control reply queues a client keeps between calls, as kombu's `Mailbox` keeps the
//! reply queue of its `oid`: binding one costs a connection and a round trip or two (on Redis a
//! `SADD` and a connection of its own for `BRPOP`), more than a `ping`'s whole round trip. A call
//! takes a queue (binding a new one only when every kept one is in use by another thread) and
//! puts it back; a reply that comes after its call ended waits there and is skipped by its ticket.

use std::sync::Mutex;

use crate::rt::lock;
use crate::transport::Fanout;

/// Idle reply queues, each with the `oid` it is bound with.
#[derive(Default)]
pub(crate) struct ReplyQueues(Mutex<Vec<(String, Fanout)>>);

/// Idle queues kept at most; more would only be bound for bursts of concurrent calls.
const KEEP: usize = 4;

impl ReplyQueues {
    /// An idle queue and its oid, if one is kept.
    pub(crate) fn take(&self) -> Option<(String, Fanout)> {
        lock(&self.0).pop()
    }

    /// Gives a queue back for the next call.
    pub(crate) fn put(&self, oid: String, queue: Fanout) {
        let mut idle = lock(&self.0);
        if idle.len() < KEEP {
            idle.push((oid, queue));
        }
    }
}

impl std::fmt::Debug for ReplyQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |q| q.len());
        write!(f, "ReplyQueues({n} idle)")
    }
}
