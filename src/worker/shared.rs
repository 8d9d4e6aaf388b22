//! What every shard of a worker shares: frozen at start (settings, registry, client) or atomic
//! (lifecycle, counters), with each shard's counters on a cache line of their own.

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use crossbeam_queue::SegQueue;

use crate::client::Client;
use crate::events::Dispatcher;
use crate::protocol::Accept;
use crate::rt::Notify;
use crate::task::{Registry, StateFactory};

use super::lifecycle::Lifecycle;
use super::rate_limit::RateLimits;
use super::revoke::Revoked;
use super::signal::Hooks;
use super::steal::StealSet;

/// One shard's counters over the worker's life, on a cache line of their own: a shared counter
/// bumped by every shard per task moved its line between cores on each task.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    /// Bodies started (`active` = started − processed).
    pub started: AtomicU64,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
    pub stolen: AtomicU64,
    pub store_failed: AtomicU64,
}

/// What every shard shares, frozen at start (config, registry) or atomic (lifecycle, counters).
pub(crate) struct WorkerShared {
    pub registry: Arc<Registry>,
    pub client: Client,
    pub accept: Accept,
    pub acks_late: bool,
    pub ignore_result: bool,
    pub result_extended: bool,
    pub track_started: bool,
    pub acks_on_failure_or_timeout: bool,
    pub reject_on_worker_lost: bool,
    /// `task_time_limit` / `task_soft_time_limit`, seconds.
    pub time_limit: Option<f64>,
    pub soft_time_limit: Option<f64>,
    /// ETA tasks one shard holds before further ones count against its prefetch
    /// (`worker_eta_task_limit` split over the shards).
    pub eta_limit: Option<usize>,
    pub rate_limits: RateLimits,
    pub time_limits: super::time_limit::TimeLimits,
    /// The settings, as `inspect conf` shows them (passwords masked).
    pub conf: serde_json::Value,
    pub revoked: Revoked,
    /// Per shard: ids (and signal names) of running tasks to terminate.
    pub terminate: Vec<SegQueue<(String, Option<String>)>>,
    /// When the worker started, for `stats`' uptime.
    pub since: std::time::Instant,
    pub hooks: Hooks,
    /// Worker and task events (task events with `-E` or `enable_events`).
    pub events: Arc<Dispatcher>,
    pub hostname: Arc<str>,
    /// The other workers, as gossip follows them (`--without-gossip`: never filled).
    pub peers: super::peers::Peers,
    /// The queues consumed: `-Q` at start, then `add_consumer` / `cancel_consumer`.
    pub consuming: super::consuming::Consuming,
    /// Per shard: how many bodies may run at once (`-c` split over the shards).
    pub slots: Vec<usize>,
    /// `worker_prefetch_multiplier`: a shard reserves this many deliveries per slot.
    pub prefetch_multiplier: usize,
    pub lifecycle: Lifecycle,
    pub steal: StealSet,
    /// Per shard.
    pub stats: Vec<Counters>,
    pub state_factories: Vec<(TypeId, StateFactory)>,
    pub started: AtomicUsize,
    pub started_notify: Notify,
}

impl WorkerShared {
    /// Deliveries shard `index` may hold reserved (Celery's prefetch count, per shard).
    pub(crate) fn prefetch(&self, index: usize) -> usize {
        self.slots[index] * self.prefetch_multiplier
    }

    /// Bodies the whole worker may run at once (`-c`).
    pub(crate) fn concurrency(&self) -> usize {
        self.slots.iter().sum()
    }

    /// Wakes every shard to look at what changed (the lifecycle, the queues consumed).
    pub(crate) fn wake_all(&self) {
        for w in &self.steal.wake {
            w.notify();
        }
    }

    /// Moves the lifecycle towards shutdown and wakes every shard to see it.
    pub(crate) fn shut_down(&self, mode: super::ShutdownMode) {
        self.lifecycle.advance(mode);
        self.wake_all();
    }

    /// One counter summed over the shards.
    pub(crate) fn total(&self, counter: fn(&Counters) -> &AtomicU64) -> u64 {
        self.stats.iter().map(|c| counter(c).load(std::sync::atomic::Ordering::Relaxed)).sum()
    }
}
