//! Building, starting and stopping a worker: the shared state of all shards, the shard threads,
//! and signal handling (first SIGINT/SIGTERM: warm shutdown; second: cold).

use std::any::TypeId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_queue::SegQueue;

use crate::client::Client;
use crate::config::{Config, RateLimit};
use crate::protocol::Accept;
use crate::rt::{self, Notify, ShardHandle};
use crate::task::{Registry, StateFactory};
use crate::{Error, Result};

use super::lifecycle::Lifecycle;
use super::rate_limit::RateLimits;
use super::revoke::Revoked;
use super::shared::{Counters, WorkerShared};
use super::signal::{Hooks, Signal};
use super::steal::StealSet;
use super::{expand_nodename, Phase, ShutdownMode};

/// A snapshot of the worker's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks run to an outcome (success or failure).
    pub processed: u64,
    /// Of those, failures.
    pub failed: u64,
    /// Messages rejected: undecodable, disallowed content, unregistered task.
    pub rejected: u64,
    /// Deliveries moved from one shard's reserved queue to another's.
    pub stolen: u64,
    /// Outcomes the result store refused or never took (each logged with its task): with
    /// acks_late their messages stay unacked for the broker to deliver again.
    pub store_failed: u64,
    /// Tasks processed by each shard.
    pub per_shard: Vec<u64>,
}

/// For people: `processed 120 (3 failed), rejected 1, stolen 40; per shard: 60, 60`, with the
/// results the store refused named only when there are some.
impl std::fmt::Display for WorkerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "processed {} ({} failed), rejected {}, stolen {}",
            self.processed, self.failed, self.rejected, self.stolen
        )?;
        if self.store_failed > 0 {
            write!(f, ", results not stored {}", self.store_failed)?;
        }
        let shards: Vec<String> = self.per_shard.iter().map(u64::to_string).collect();
        write!(f, "; per shard: {}", shards.join(", "))
    }
}

/// Configures a worker; made by [`App::worker`](crate::App::worker).
pub struct WorkerBuilder {
    registry: Arc<Registry>,
    client: Client,
    config: Config,
    accept: Accept,
    state_factories: Vec<(TypeId, StateFactory)>,
    hooks: Hooks,
    app_name: String,
    concurrency: Option<usize>,
    shards: Option<usize>,
    queues: Option<Vec<String>>,
    hostname: Option<String>,
    stealing: bool,
    busy_poll: Option<Duration>,
    heartbeat: bool,
    mingle: bool,
    gossip: bool,
}

impl WorkerBuilder {
    pub(crate) fn new(
        app_name: String,
        registry: Arc<Registry>,
        client: Client,
        config: Config,
        accept: Accept,
        state_factories: Vec<(TypeId, StateFactory)>,
        hooks: Hooks,
    ) -> Self {
        WorkerBuilder {
            hooks,
            registry,
            client,
            concurrency: config.worker_concurrency,
            shards: None,
            config,
            accept,
            state_factories,
            app_name,
            queues: None,
            hostname: None,
            stealing: true,
            busy_poll: None,
            heartbeat: true,
            mingle: true,
            gossip: true,
        }
    }

    /// At most `n` task bodies run at once on this worker (Celery's `-c`,
    /// `worker_concurrency`); default: the CPUs this process may use. The bodies are split
    /// evenly over the shards, and each shard reserves `worker_prefetch_multiplier` deliveries
    /// per body it may run, as Celery reserves `multiplier × concurrency`. A sync body holds its
    /// shard's thread while it runs, so sync tasks run at most one per shard whatever `n` is;
    /// async bodies interleave up to their shard's share (`-c 1000` for I/O-bound async tasks).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Number of shards, one thread pinned to a CPU each (`--shards`); default: the CPUs this
    /// process may use, at most the concurrency. More shards than bodies is refused at start
    /// (a shard runs at least one body).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Queues to consume (`-Q a,b`); default: `task_default_queue`.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Node name pattern (`-n w1@%h`); default `celery@%h`.
    pub fn hostname(mut self, pattern: &str) -> Self {
        self.hostname = Some(pattern.to_owned());
        self
    }

    /// `worker_prefetch_multiplier`.
    pub fn prefetch_multiplier(mut self, n: u32) -> Self {
        self.config.worker_prefetch_multiplier = n.max(1);
        self
    }

    /// Turns cross-shard stealing off (for measuring what it buys).
    pub fn stealing(mut self, on: bool) -> Self {
        self.stealing = on;
        self
    }

    /// Lets each shard poll for up to `window` after its last piece of work before it parks
    /// (glommio's spin-before-park). A parked shard needs a cross-core wake-up, tens of µs on
    /// virtual machines; a polling one sees new work at once, at the price of a busy core while
    /// it waits. For latency-critical workers on cores of their own (`--busy-poll-us`); it only
    /// applies to shards pinned to a CPU, and hurts on a machine where the broker or the client
    /// needs the same cores.
    pub fn busy_poll(mut self, window: Duration) -> Self {
        self.busy_poll = (!window.is_zero()).then_some(window);
        self
    }

    /// Sends task events (`-E`, `worker_send_task_events`); the `enable_events` and
    /// `disable_events` commands change it while the worker runs.
    pub fn task_events(mut self, on: bool) -> Self {
        self.config.worker_send_task_events = on;
        self
    }

    /// Sends worker events (`worker-online`, a `worker-heartbeat` every 2 s, `worker-offline`);
    /// on by default, off with `--without-heartbeat`.
    pub fn heartbeat(mut self, on: bool) -> Self {
        self.heartbeat = on;
        self
    }

    /// Celery's mingle (on by default, off with `--without-mingle`): at start, before it
    /// consumes, the worker greets the workers already running (`hello`, up to 1 s, as Celery
    /// waits) and takes in the task ids they hold revoked, so a task revoked before this worker
    /// came up is not run by it. Not on memory:// (no other process can be there).
    pub fn mingle(mut self, on: bool) -> Self {
        self.mingle = on;
        self
    }

    /// Celery's gossip (on by default, off with `--without-gossip`): the worker follows the
    /// other workers' events, keeps its clock in step with theirs, logs a peer whose heartbeats
    /// stop (`missed heartbeat from …`), lists the peers alive ([`WorkerHandle::peers`]) and
    /// takes part in `election`s. Not on memory://.
    pub fn gossip(mut self, on: bool) -> Self {
        self.gossip = on;
        self
    }

    /// File that keeps revoked task ids across restarts (`--statedb`, `worker_state_db`).
    pub fn state_db(mut self, path: impl Into<String>) -> Self {
        self.config.worker_state_db = Some(path.into());
        self
    }

    /// The node name this worker will use.
    pub fn nodename(&self) -> String {
        expand_nodename(self.hostname.as_deref().unwrap_or("celery@%h"), &crate::hostname())
    }

    /// The most bodies this worker will run at once.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency.unwrap_or_else(|| rt::cpus().len()).max(1)
    }

    /// The shard count this worker will use.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| rt::cpus().len().min(self.concurrency_limit())).max(1)
    }

    /// Bodies per shard: the concurrency split evenly, the first shards taking the remainder.
    fn slots(&self) -> Result<Vec<usize>> {
        let (c, n) = (self.concurrency_limit(), self.shard_count());
        if self.shards == Some(0) {
            return Err(Error::invalid("--shards", "must be at least 1"));
        }
        if n > c {
            return Err(Error::invalid(
                "--shards",
                format!("{n} shards for a concurrency of {c}: each shard runs at least one body; give -c {n} or more, or fewer shards"),
            ));
        }
        Ok((0..n).map(|i| c / n + usize::from(i < c % n)).collect())
    }

    /// The queues this worker will consume.
    pub fn queue_names(&self) -> Vec<String> {
        self.queues.clone().unwrap_or_else(|| match self.config.task_queues.as_slice() {
            [] => vec![self.config.task_default_queue.clone()],
            declared => declared.iter().map(|q| q.name.clone()).collect(),
        })
    }

    /// Celery's start-up banner for this worker.
    pub fn banner(&self) -> String {
        super::banner(
            &self.app_name,
            &self.nodename(),
            &self.client.broker().url(),
            &self.client.backend().url(),
            self.concurrency_limit(),
            self.shard_count(),
            self.config.worker_prefetch_multiplier,
            self.config.worker_send_task_events,
            &self.queue_names(),
            &self.registry.names(),
        )
    }

    /// Starts the shards; returns once every shard is consuming.
    pub fn start(self) -> Result<WorkerHandle> {
        let n = self.shard_count();
        let slots = self.slots()?;
        if n > rt::cpus().len() {
            tracing::warn!("{n} shards on {} usable CPUs: shards share CPUs and are not pinned", rt::cpus().len());
        }
        let queues = self.queue_names();
        if queues.is_empty() || queues.iter().any(String::is_empty) {
            return Err(Error::invalid("queues", "a worker needs at least one non-empty queue name"));
        }
        let default_rate = match &self.config.task_default_rate_limit {
            Some(r) => Some(RateLimit::parse(r).map_err(|e| Error::invalid("task_default_rate_limit", e))?),
            None => None,
        };
        let mut rates = Vec::new();
        for name in self.registry.names() {
            let entry = self.registry.get(name).expect("names come from the registry");
            let limit = match &entry.options.rate_limit {
                Some(r) => {
                    Some(RateLimit::parse(r).map_err(|e| Error::invalid("rate_limit", format!("task {name}: {e}")))?)
                }
                None => default_rate,
            };
            rates.push((name, limit));
        }
        let rate_limits = RateLimits::new(rates, self.config.worker_disable_rate_limits);
        let revoked = Revoked::open(self.config.worker_state_db.as_deref().map(std::path::Path::new))
            .map_err(|e| Error::invalid("worker_state_db", e))?;
        wait_for_services(&self.client, &queues, self.config.broker_connection_max_retries)?;
        let (steal, locals) = StealSet::new(n, self.stealing);
        let c = &self.config;
        let hostname = self.nodename();
        let events = crate::events::Dispatcher::new(
            self.client.broker().clone(),
            &hostname,
            Arc::default(),
            c.worker_send_task_events,
        );
        let in_process = matches!(self.client.broker(), crate::transport::Broker::Memory(_));
        if self.mingle && !in_process {
            mingle(&self.client, &hostname, &revoked, events.clock());
        }
        let shared = Arc::new(WorkerShared {
            track_started: c.task_track_started,
            acks_on_failure_or_timeout: c.task_acks_on_failure_or_timeout,
            reject_on_worker_lost: c.task_reject_on_worker_lost,
            time_limit: c.task_time_limit,
            soft_time_limit: c.task_soft_time_limit,
            eta_limit: c.worker_eta_task_limit.map(|l| l.div_ceil(n).max(1)),
            rate_limits,
            time_limits: super::time_limit::TimeLimits::new(self.registry.names()),
            conf: super::inspect::conf(c, &self.client),
            revoked,
            terminate: (0..n).map(|_| SegQueue::new()).collect(),
            since: std::time::Instant::now(),
            hooks: self.hooks.clone(),
            events,
            hostname: Arc::from(hostname),
            peers: super::peers::Peers::new(self.gossip && !in_process),
            registry: self.registry,
            client: self.client,
            accept: self.accept,
            acks_late: self.config.task_acks_late,
            ignore_result: self.config.task_ignore_result,
            result_extended: self.config.result_extended,
            consuming: super::consuming::Consuming::new(c.task_queues.clone(), &queues),
            slots,
            prefetch_multiplier: self.config.worker_prefetch_multiplier as usize,
            lifecycle: Lifecycle::new(),
            steal,
            stats: (0..n).map(|_| Counters::default()).collect(),
            state_factories: self.state_factories,
            started: AtomicUsize::new(0),
            started_notify: Notify::new(),
        });
        let locals = Arc::new(Mutex::new(locals.into_iter().map(Some).collect::<Vec<_>>()));
        let s2 = shared.clone();
        let queries: super::shard_ctx::Queries = Arc::new((0..n).map(|_| SegQueue::new()).collect());
        let shards = rt::start_shards(n, "celeriac-shard", self.busy_poll, move |i| {
            let shared = s2.clone();
            let queries = queries.clone();
            let local =
                locals.lock().unwrap_or_else(|p| p.into_inner())[i].take().expect("each shard takes its queue once");
            super::shard::shard_main(shared, i, local, queries)
        })?;
        loop {
            let seen = shared.started_notify.epoch();
            if shared.started.load(Ordering::Acquire) >= n {
                break;
            }
            if shards.iter().any(ShardHandle::exited) {
                return Err(shard_start_failed(&shared, shards));
            }
            rt::block_on(rt::timeout_anywhere(Duration::from_millis(100), shared.started_notify.changed(seen)));
        }
        tracing::info!("{} ready.", shared.hostname);
        shared.hooks.send(&Signal::WorkerReady { hostname: &shared.hostname });
        let heart = self.heartbeat.then(|| super::heartbeat::Heart::start(shared.clone()));
        Ok(WorkerHandle { shared, shards: Mutex::new(shards), heart: Mutex::new(heart) })
    }
}

/// Celery's `Mingle.sync`: `hello` to every worker with our revoked ids; theirs (and their
/// clocks) are taken in. A failure only costs the sync, as in Celery.
fn mingle(client: &Client, hostname: &str, revoked: &Revoked, clock: &crate::events::Clock) {
    tracing::info!("mingle: searching for neighbors");
    let hello = serde_json::json!({"from_node": hostname, "revoked": revoked.ids()});
    let replies = match client.inspect().timeout(Duration::from_secs(1)).call("hello", hello) {
        Ok(r) => r,
        Err(e) => return tracing::warn!("mingle: cannot greet the other workers: {e}"),
    };
    let peers: Vec<_> = replies.into_iter().filter(|r| r.node != hostname && r.value.is_object()).collect();
    if peers.is_empty() {
        return tracing::info!("mingle: all alone");
    }
    tracing::info!("mingle: sync with {} nodes", peers.len());
    for p in &peers {
        // Celery sends its LimitedSet's data ({id: time}); celeriac a list.
        match &p.value["revoked"] {
            serde_json::Value::Object(m) => m.keys().for_each(|id| revoked.add(id)),
            serde_json::Value::Array(a) => {
                a.iter().filter_map(serde_json::Value::as_str).for_each(|id| revoked.add(id))
            }
            _ => {}
        }
        if let Some(c) = p.value["clock"].as_u64() {
            clock.adjust(c);
        }
    }
    tracing::info!("mingle: sync complete");
}

/// Waits until the broker and the result store answer, the way Celery's consumer retries its
/// broker connection at start: each failure is logged with its reason and the next delay, and
/// the worker does not claim to be ready meanwhile. A refusal no retry can cure (a wrong
/// password, a missing database) and the last of `max_retries` attempts are errors that say why.
fn wait_for_services(client: &Client, queues: &[String], max_retries: u32) -> Result<()> {
    let broker = client.broker();
    let backend = client.backend();
    type Check<'a> = &'a dyn Fn() -> std::result::Result<(), (bool, String)>;
    let checks: [(&str, String, Check<'_>); 2] =
        [("broker", broker.url(), &|| broker.check()), ("result backend", backend.url(), &|| backend.check())];
    for (what, url, check) in checks {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match check() {
                Ok(()) => break,
                Err((fatal, why)) if fatal || attempt >= max_retries.max(1) => {
                    let setting = if what == "broker" { "broker_url" } else { "result_backend" };
                    let reason = format!("cannot use the {what} at {url}: {why}");
                    return Err(Error::invalid(setting, reason));
                }
                Err((_, why)) => {
                    tracing::error!(
                        "Cannot connect to the {what} at {url}: {why}. Trying again in {:.2} seconds... ({attempt}/{max_retries})",
                        delay.as_secs_f64()
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
            }
        }
    }
    // Queues declared now, so a queue that exists with other arguments (RabbitMQ's
    // PRECONDITION_FAILED) fails the start with RabbitMQ's words instead of a worker that never
    // consumes.
    broker
        .declare_queues(queues)
        .map_err(|e| Error::invalid("task_queues", format!("cannot declare the queues: {e}")))?;
    Ok(())
}

/// A shard stopped before it came up (its executor could not be built, or it panicked): the
/// others are stopped and the first shard's own error is returned, instead of waiting forever.
fn shard_start_failed(shared: &WorkerShared, shards: Vec<ShardHandle>) -> Error {
    shared.shut_down(ShutdownMode::Cold);
    let mut reason = None;
    for (i, s) in shards.into_iter().enumerate() {
        let exited = s.exited();
        match s.join() {
            Err(e) if reason.is_none() => reason = Some(format!("shard {i}: {e}")),
            Ok(()) if exited && reason.is_none() => reason = Some(format!("shard {i} stopped during start-up")),
            _ => {}
        }
    }
    let mut reason = reason.unwrap_or_else(|| "a shard stopped during start-up".into());
    if reason.contains("MemLockLimit") {
        // glommio's io_uring rings need RLIMIT_MEMLOCK of at least 512 KiB per process.
        reason.push_str(" (io_uring needs at least 512 KiB of locked memory: raise `ulimit -l`, LimitMEMLOCK= in a systemd unit, --ulimit memlock= in docker)");
    }
    Error::Runtime(std::io::Error::other(format!("the worker could not start: {reason}")))
}

/// A running worker.
pub struct WorkerHandle {
    shared: Arc<WorkerShared>,
    shards: Mutex<Vec<ShardHandle>>,
    heart: Mutex<Option<super::heartbeat::Heart>>,
}

impl WorkerHandle {
    /// The node name.
    pub fn hostname(&self) -> &str {
        &self.shared.hostname
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.shared.lifecycle.phase()
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkerStats {
        let s = &self.shared;
        WorkerStats {
            processed: s.total(|c| &c.processed),
            failed: s.total(|c| &c.failed),
            rejected: s.total(|c| &c.rejected),
            stolen: s.total(|c| &c.stolen),
            store_failed: s.total(|c| &c.store_failed),
            per_shard: s.stats.iter().map(|c| c.processed.load(Ordering::Relaxed)).collect(),
        }
    }

    /// Changes the rate limit of task type `task` on this worker while it runs (`None` or
    /// `"0"` removes it); what the `rate_limit` control command calls. An unknown task or a
    /// malformed rate is an error.
    pub fn set_rate_limit(&self, task: &str, rate_limit: Option<&str>) -> Result<()> {
        let invalid = |reason: String| Error::invalid("rate_limit", reason);
        let limit = rate_limit.map(RateLimit::parse).transpose().map_err(invalid)?;
        if !self.shared.rate_limits.set(task, limit) {
            return Err(invalid(format!("no task named {task:?} is registered")));
        }
        Ok(())
    }

    /// Revokes `task_id` on this worker only (what the `revoke` control command calls; use
    /// [`Client::revoke`] to reach every worker).
    pub fn revoke(&self, task_id: &str, terminate: bool) {
        super::mailbox::revoke(&self.shared, vec![task_id.to_owned()], terminate, None);
    }

    /// The task ids this worker holds revoked, oldest first (`inspect revoked`).
    pub fn revoked(&self) -> Vec<String> {
        self.shared.revoked.ids()
    }

    /// The other workers alive now, as gossip knows them (empty with gossip off or on
    /// memory://): each sent a worker event within twice its heartbeat interval.
    pub fn peers(&self) -> Vec<String> {
        self.shared.peers.alive()
    }

    /// Begins a shutdown without waiting for it.
    pub fn request_shutdown(&self, mode: ShutdownMode) {
        self.shared.shut_down(mode);
    }

    /// Warm shutdown: stop consuming, finish running tasks, return reserved ones; waits for the
    /// shards to stop and returns the final counters.
    pub fn shutdown(self) -> WorkerStats {
        self.request_shutdown(ShutdownMode::Warm);
        self.join()
    }

    /// Waits for every shard to stop (after a shutdown was requested); the final counters.
    pub fn join(self) -> WorkerStats {
        let shards = std::mem::take(&mut *self.shards.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, s) in shards.into_iter().enumerate() {
            if let Err(e) = s.join() {
                tracing::error!("shard {i} stopped abnormally: {e}");
            }
        }
        if let Err(e) = self.shared.revoked.save() {
            tracing::error!("{e}");
        }
        if let Some(mut heart) = self.heart.lock().unwrap_or_else(|p| p.into_inner()).take() {
            heart.stop();
        }
        self.shared.hooks.send(&Signal::WorkerShutdown { hostname: &self.shared.hostname });
        let stats = self.stats();
        tracing::info!("{}: shut down. {stats}", self.shared.hostname);
        stats
    }

    /// Runs until SIGINT or SIGTERM: the first starts a warm shutdown, a second makes it cold.
    pub fn run_until_signal(self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let shared = self.shared.clone();
        let watcher = std::thread::Builder::new().name("celeriac-signals".into()).spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                let mode = if seen == 1 { ShutdownMode::Warm } else { ShutdownMode::Cold };
                let how = if seen == 1 { "warm shutdown (MainProcess)" } else { "cold shutdown (MainProcess)" };
                eprintln!("\nworker: {how} after signal {sig}");
                shared.shut_down(mode);
            }
        })?;
        let _ = self.join();
        handle.close();
        let _ = watcher.join();
        Ok(())
    }
}
