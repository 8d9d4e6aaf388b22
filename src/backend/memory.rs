//! `memory://` results: a striped map from task id to meta, with one-shot waiters so a client
//! blocked in `get()` is handed the meta the moment a shard stores it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry as Found, HashTable};
use serde_json::Value;

use crate::protocol::{ResultMeta, State};

const STRIPES: usize = 64;

/// One task id's results and waiters, boxed so the table holds a pointer per id: growing a
/// stripe (200,000 results make each stripe double a dozen times) moves 8 bytes per id, not
/// the 56 a `HashMap<String, Slot>` bucket held — the growth was a tenth of a shard's time in a
/// drain.
#[derive(Debug)]
struct Slot {
    hash: u64,
    /// The task id, moved out of the first meta stored (`meta.task_id` is left empty and
    /// restored on the way out), so a store allocates no key.
    id: String,
    meta: Option<Stored>,
    waiters: Vec<flume::Sender<ResultMeta>>,
}

impl Slot {
    fn meta(&self) -> Option<ResultMeta> {
        self.meta.as_ref().map(|m| m.to_meta(&self.id))
    }
}

/// A stored meta. Most results are a status, a value and a date; those are kept without the
/// rest of [`ResultMeta`] (464 bytes, most of them `None`), so a drain's 200,000 results take a
/// third of the memory and of the fresh pages the kernel clears for it.
#[derive(Debug)]
enum Stored {
    Plain {
        status: State,
        result: Value,
        date_done: Option<String>,
    },
    /// Anything more (traceback, children, group, parent, extended fields); `task_id` emptied.
    Full(Box<ResultMeta>),
}

impl Stored {
    fn new(meta: ResultMeta) -> Self {
        // Matched in full (no `..`), so a field added to ResultMeta cannot be dropped here unseen.
        let ResultMeta {
            status: _,
            result: _,
            traceback,
            children,
            date_done: _,
            group_id,
            parent_id,
            name,
            args,
            kwargs,
            worker,
            retries,
            queue,
            task_id: _,
            destination: _,
        } = &meta;
        let plain = traceback.is_none()
            && children.as_ref().is_some_and(Vec::is_empty)
            && group_id.is_none()
            && parent_id.is_none()
            && name.is_none()
            && args.is_none()
            && kwargs.is_none()
            && worker.is_none()
            && retries.is_none()
            && queue.is_none();
        if plain {
            return Stored::Plain { status: meta.status, result: meta.result, date_done: meta.date_done };
        }
        Stored::Full(Box::new(meta))
    }

    fn status(&self) -> &State {
        match self {
            Stored::Plain { status, .. } => status,
            Stored::Full(m) => &m.status,
        }
    }

    fn to_meta(&self, id: &str) -> ResultMeta {
        match self {
            Stored::Plain { status, result, date_done } => {
                ResultMeta::done_at(id, status.clone(), result.clone(), date_done.clone())
            }
            Stored::Full(m) => ResultMeta { task_id: id.to_owned(), ..ResultMeta::clone(m) },
        }
    }
}

/// Task id → slot, hashed once with foldhash (randomly seeded per process): bits 32.. pick the
/// stripe, the whole hash places the id in the stripe's table.
type Stripe = HashTable<Box<Slot>>;

/// The in-process result store. Stripes keep shards storing different ids off each other's lock.
#[derive(Debug)]
pub struct MemoryBackend {
    stripes: Vec<Mutex<Stripe>>,
    hasher: RandomState,
    groups: Mutex<HashMap<String, Vec<String>>>,
    /// Chords counted in process.
    pub(crate) chords: super::chord::MemoryChords,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            groups: Mutex::default(),
            chords: Default::default(),
        }
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    fn stripe(&self, id: &str) -> (u64, std::sync::MutexGuard<'_, Stripe>) {
        let hash = self.hasher.hash_one(id);
        let i = (hash >> 32) as usize % STRIPES;
        (hash, self.stripes[i].lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn store(&self, mut meta: ResultMeta) {
        let (hash, mut map) = self.stripe(&meta.task_id);
        let slot = match map.entry(hash, |s| s.id == meta.task_id, |s| s.hash) {
            Found::Occupied(o) => o.into_mut(),
            Found::Vacant(v) => {
                let id = std::mem::take(&mut meta.task_id);
                v.insert(Box::new(Slot { hash, id, meta: None, waiters: Vec::new() })).into_mut()
            }
        };
        meta.task_id = String::new();
        if slot.meta.as_ref().is_some_and(|m| *m.status() == State::Success) {
            return;
        }
        if meta.status.is_ready() && !slot.waiters.is_empty() {
            let ready = ResultMeta { task_id: slot.id.clone(), ..meta.clone() };
            for w in slot.waiters.drain(..) {
                let _ = w.try_send(ready.clone());
            }
        }
        slot.meta = Some(Stored::new(meta));
    }

    pub(crate) fn get(&self, id: &str) -> Option<ResultMeta> {
        let (hash, map) = self.stripe(id);
        map.find(hash, |s| s.id == id).and_then(|s| s.meta())
    }

    /// Hands `tx` the meta once the task is ready (at once if it already is).
    pub(crate) fn register(&self, id: &str, tx: flume::Sender<ResultMeta>) {
        let (hash, mut map) = self.stripe(id);
        let slot = match map.entry(hash, |s| s.id == id, |s| s.hash) {
            Found::Occupied(o) => o.into_mut(),
            Found::Vacant(v) => {
                v.insert(Box::new(Slot { hash, id: id.to_owned(), meta: None, waiters: Vec::new() })).into_mut()
            }
        };
        match slot.meta() {
            Some(m) if m.status.is_ready() => {
                let _ = tx.try_send(m);
            }
            _ => slot.waiters.push(tx),
        }
    }

    /// Drops the waiters of `id` nobody listens to any more (a `get()` that timed out, a result
    /// handle dropped unread), and the slot with them if nothing was stored.
    pub(crate) fn prune(&self, id: &str) {
        let (hash, mut map) = self.stripe(id);
        if let Ok(mut o) = map.find_entry(hash, |s| s.id == id) {
            let slot = o.get_mut();
            slot.waiters.retain(|w| !w.is_disconnected());
            if slot.meta.is_none() && slot.waiters.is_empty() {
                o.remove();
            }
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        let (hash, mut map) = self.stripe(id);
        if let Ok(o) = map.find_entry(hash, |s| s.id == id) {
            o.remove();
        }
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
        let ready = ResultMeta::new("t1", State::Success, json!(8));
        b.store(ready.clone());
        assert_eq!(early.try_recv().unwrap(), ready, "the waiter's copy names the task");
        b.store(ResultMeta::new("t1", State::Failure, json!(null)));
        assert_eq!(b.get("t1").unwrap(), ready, "SUCCESS stays, with its id");
        assert_eq!(waiter(&b, "t1").try_recv().unwrap(), ready);
    }

    #[test]
    fn metas_come_back_whole_plain_or_not() {
        let b = MemoryBackend::default();
        let mut rich = ResultMeta::new("t3", State::Failure, json!({"exc_type": "ValueError"}));
        rich.traceback = Some("Traceback (most recent call last):\n".into());
        rich.group_id = Some("g1".into());
        rich.name = Some("proj.add".into());
        rich.args = Some(json!([1, 2]));
        rich.retries = Some(2);
        b.store(rich.clone());
        assert_eq!(b.get("t3").unwrap(), rich);
        let mut orphan = ResultMeta::new("t4", State::Success, json!(1));
        orphan.children = None;
        b.store(orphan.clone());
        assert_eq!(b.get("t4").unwrap(), orphan, "children: null is kept, not made []");
        let pending = ResultMeta::new("t5", State::Started, json!({"pid": 1}));
        b.store(pending.clone());
        assert_eq!(b.get("t5").unwrap(), pending, "date_done stays null");
    }

    #[test]
    fn abandoned_waiters_are_pruned() {
        let b = MemoryBackend::default();
        drop(waiter(&b, "t2"));
        let kept = waiter(&b, "t2");
        b.prune("t2");
        let waiting = |b: &MemoryBackend| {
            let (hash, map) = b.stripe("t2");
            map.find(hash, |s| s.id == "t2").map(|s| s.waiters.len())
        };
        assert_eq!(waiting(&b), Some(1));
        drop(kept);
        b.prune("t2");
        assert_eq!(waiting(&b), None, "an empty slot goes");
    }
}
