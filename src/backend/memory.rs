//! `memory://` results: a striped map from task id to meta, with one-shot waiters so a client
//! blocked in `get()` is handed the meta the moment a shard stores it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::fast::RandomState;

use crate::protocol::{ResultMeta, State};

const STRIPES: usize = 64;

#[derive(Debug, Default)]
struct Slot {
    /// Boxed, so the map's buckets stay small and growing it copies pointers, not metas.
    meta: Option<Box<ResultMeta>>,
    waiters: Vec<flume::Sender<ResultMeta>>,
}

/// Task id → slot. foldhash (randomly seeded per process) rather than SipHash: hashing the
/// 36-byte id twice per store (stripe, then bucket) was 4 % of a shard's time in a drain.
type Stripe = HashMap<String, Slot, RandomState>;

/// The in-process result store. Stripes keep shards storing different ids off each other's lock.
#[derive(Debug)]
pub struct MemoryBackend {
    stripes: Vec<Mutex<Stripe>>,
    hasher: RandomState,
    groups: Mutex<HashMap<String, Vec<String>>>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            groups: Mutex::default(),
        }
    }
}

impl MemoryBackend {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    fn stripe(&self, id: &str) -> std::sync::MutexGuard<'_, Stripe> {
        let i = (self.hasher.hash_one(id) as usize) % STRIPES;
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn store(&self, meta: ResultMeta) {
        let mut map = self.stripe(&meta.task_id);
        let slot = map.entry(meta.task_id.clone()).or_default();
        if slot.meta.as_ref().is_some_and(|m| m.status == State::Success) {
            return;
        }
        if meta.status.is_ready() {
            for w in slot.waiters.drain(..) {
                let _ = w.try_send(meta.clone());
            }
        }
        slot.meta = Some(Box::new(meta));
    }

    pub(crate) fn get(&self, id: &str) -> Option<ResultMeta> {
        self.stripe(id).get(id).and_then(|s| s.meta.as_deref().cloned())
    }

    /// Hands `tx` the meta once the task is ready (at once if it already is).
    pub(crate) fn register(&self, id: &str, tx: flume::Sender<ResultMeta>) {
        let mut map = self.stripe(id);
        let slot = map.entry(id.to_owned()).or_default();
        match &slot.meta {
            Some(m) if m.status.is_ready() => {
                let _ = tx.try_send(ResultMeta::clone(m));
            }
            _ => slot.waiters.push(tx),
        }
    }

    /// Drops the waiters of `id` nobody listens to any more (a `get()` that timed out, a result
    /// handle dropped unread), and the slot with them if nothing was stored.
    pub(crate) fn prune(&self, id: &str) {
        let mut map = self.stripe(id);
        if let Some(slot) = map.get_mut(id) {
            slot.waiters.retain(|w| !w.is_disconnected());
            if slot.meta.is_none() && slot.waiters.is_empty() {
                map.remove(id);
            }
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        self.stripe(id).remove(id);
    }

    pub(crate) fn save_group(&self, group_id: &str, ids: &[String]) {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).insert(group_id.to_owned(), ids.to_vec());
    }

    pub(crate) fn restore_group(&self, group_id: &str) -> Option<Vec<String>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).get(group_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn waiter(b: &MemoryBackend, id: &str) -> flume::Receiver<ResultMeta> {
        let (tx, rx) = flume::bounded(1);
        b.register(id, tx);
        rx
    }

    #[test]
    fn waiters_get_the_ready_meta_and_success_is_final() {
        let b = MemoryBackend::default();
        let early = waiter(&b, "t1");
        b.store(ResultMeta::new("t1", State::Started, json!(null)));
        assert!(early.try_recv().is_err(), "not ready yet");
        b.store(ResultMeta::new("t1", State::Success, json!(8)));
        assert_eq!(early.try_recv().unwrap().result, json!(8));
        b.store(ResultMeta::new("t1", State::Failure, json!(null)));
        assert_eq!(b.get("t1").unwrap().status, State::Success);
        assert_eq!(waiter(&b, "t1").try_recv().unwrap().result, json!(8));
    }

    #[test]
    fn abandoned_waiters_are_pruned() {
        let b = MemoryBackend::default();
        drop(waiter(&b, "t2"));
        let kept = waiter(&b, "t2");
        b.prune("t2");
        assert_eq!(b.stripe("t2").get("t2").unwrap().waiters.len(), 1);
        drop(kept);
        b.prune("t2");
        assert!(b.stripe("t2").get("t2").is_none(), "an empty slot goes");
    }
}
