//! One shard's life: a consumer task that keeps the local run queue filled up to the prefetch
//! limit, a runner that starts deliveries (stealing when idle), and the warm-shutdown drain.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_deque::Worker as LocalQueue;

use crate::rt;
use crate::transport::{Consumer, Delivery};

use super::request;
use super::shard_ctx::{ShardCtx, Stop};
use super::shared::WorkerShared;
use super::Phase;

pub(crate) async fn shard_main(
    shared: Arc<WorkerShared>,
    index: usize,
    local: LocalQueue<Delivery>,
    queries: super::shard_ctx::Queries,
) {
    let sh = Rc::new(ShardCtx::new(index, shared, queries, local));
    let local = sh.local.clone();
    if index == 0 {
        // One mailbox per worker, on the first shard; subscribed before the worker reports
        // ready, so a revoke sent right after start is not missed.
        let broker = sh.shared.client.broker().clone();
        let mailbox = rt::spawn_blocking(move || broker.subscribe_fanout("celery.pidbox")).await;
        rt::spawn_local(super::mailbox::serve(sh.shared.clone(), sh.queries.clone(), index, mailbox));
        if sh.shared.peers.enabled() {
            let (broker, clock) = (sh.shared.client.broker().clone(), sh.shared.events.clock().clone());
            let receiver = rt::spawn_blocking(move || crate::events::Receiver::workers(&broker, clock)).await;
            rt::spawn_local(super::gossip::serve(sh.shared.clone(), index, receiver));
        }
    }
    rt::spawn_local(timer(sh.clone()));
    let consumer = rt::spawn(consume(sh.clone(), local.clone()));
    // consume() hands its consumer back when it stops, for the shutdown drain.
    sh.shared.started.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    sh.shared.started_notify.notify();
    run(&sh, &local).await;
    let mut consumer = consumer.await;
    drain(&sh, &local, &mut consumer).await;
}

/// Keeps the local queue filled: reserved (not started) deliveries stay at or under the
/// per-shard prefetch; with acks_late, running ones count too (they are unacked).
async fn consume(sh: Rc<ShardCtx>, local: Rc<LocalQueue<Delivery>>) -> Consumer {
    let shared = &sh.shared;
    let wake = &shared.steal.wake[sh.index];
    let (mut applied_epoch, specs) = shared.consuming.snapshot();
    let mut applied: Vec<String> = specs.into_iter().map(|q| q.name).collect();
    let mut consumer = shared.client.broker().consumer(&applied);
    let mut backoff = Duration::from_millis(50);
    loop {
        // The epoch is read before the lifecycle check: a shutdown that lands in between still
        // changes the epoch we wait on (reading it after lost that wake-up and hung shutdown).
        let seen = wake.epoch();
        if !shared.lifecycle.is_running() {
            break;
        }
        for queue in consumer.refused() {
            if shared.consuming.cancel(&queue) {
                tracing::error!("Stopped consuming from {queue}: the broker refused it (see above)");
                shared.wake_all();
            }
        }
        if shared.consuming.epoch() != applied_epoch {
            // add_consumer / cancel_consumer: the mailbox changed the list and woke us.
            let (epoch, now) = shared.consuming.snapshot();
            let (start, stop) = super::consuming::diff(&applied, &now);
            for spec in start {
                consumer.consume(spec);
            }
            for queue in &stop {
                consumer.cancel(queue);
            }
            applied = now.into_iter().map(|q| q.name).collect();
            applied_epoch = epoch;
        }
        let room = shared.prefetch(sh.index).saturating_sub(reserved(&sh, local.len()));
        // A pop already sent is taken whatever the room (work stolen meanwhile may have filled
        // it): its messages have left the queue and are not stashed as unacked until accepted,
        // so leaving its reply unread until a task ends widened the window in which a crash
        // loses them from microseconds to seconds.
        if room == 0 && !consumer.in_flight() {
            wake.changed(seen).await;
            continue;
        }
        let fetched = futures_lite::future::or(consumer.fetch(room), async {
            wake.changed(seen).await;
            Ok(Vec::new())
        })
        .await;
        match fetched {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                backoff = Duration::from_millis(50);
                for d in batch {
                    if shared.lifecycle.is_running() {
                        local.push(d);
                    } else {
                        d.requeue();
                    }
                }
                wake.notify();
                // An idle peer is worth waking (a cross-core wake-up costs tens of µs) only for
                // work this shard will not start at once: more than one delivery, or a body
                // already running that may hold the thread.
                if local.len() > 1 || sh.running.get() > 0 {
                    shared.steal.offer(sh.index);
                }
            }
            Err(e) => {
                tracing::warn!("shard {}: consumer error: {e}; retrying in {backoff:?}", sh.index);
                rt::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    consumer
}

/// Deliveries counted against the shard's prefetch: reserved (queued or due), rate-limited,
/// running with acks_late, and ETA tasks beyond `worker_eta_task_limit` (below it they sit
/// outside prefetch, as in Celery).
fn reserved(sh: &ShardCtx, queued: usize) -> usize {
    let shared = &sh.shared;
    let unacked_running = if shared.acks_late { sh.running.get() } else { 0 };
    let eta_over = shared.eta_limit.map_or(0, |l| sh.timer.eta_count().saturating_sub(l));
    queued + sh.ready.borrow().len() + sh.timer.rate_limited_count() + unacked_running + eta_over
}

/// Releases held deliveries when their moment comes; the run loop starts them.
async fn timer(sh: Rc<ShardCtx>) {
    let shared = &sh.shared;
    let wake = &shared.steal.wake[sh.index];
    loop {
        let seen = sh.timer.changed.epoch();
        let stop_seen = wake.epoch();
        if !shared.lifecycle.is_running() {
            break;
        }
        let now = std::time::Instant::now();
        while let Some(held) = sh.timer.pop_due(now) {
            request::release(&sh, held);
        }
        let rearm = sh.timer.changed.changed(seen);
        let stop = async {
            // Only a shutdown matters here; other wake-ups of the shard are ignored.
            let mut s = stop_seen;
            while shared.lifecycle.is_running() {
                wake.changed(s).await;
                s = wake.epoch();
            }
        };
        match sh.timer.next_deadline() {
            Some(at) => {
                let sleep = rt::sleep(at.saturating_duration_since(std::time::Instant::now()));
                futures_lite::future::or(futures_lite::future::or(sleep, rearm), stop).await
            }
            None => futures_lite::future::or(rearm, stop).await,
        }
    }
}

/// Starts deliveries while there is room; steals when the local queue is empty.
async fn run(sh: &Rc<ShardCtx>, local: &LocalQueue<Delivery>) {
    let shared = &sh.shared;
    let wake = &shared.steal.wake[sh.index];
    let max_running = shared.slots[sh.index];
    // Work deferred by the tasks (result writes) leaves every few starts and before parking.
    let mut since_flush = 0u32;
    rt::dispatching(true);
    loop {
        let seen = wake.epoch();
        if !shared.lifecycle.is_running() {
            break;
        }
        since_flush += 1;
        if since_flush >= FLUSH_EVERY {
            since_flush = 0;
            rt::run_deferred();
        }
        while let Some((id, signal)) = shared.terminate[sh.index].pop() {
            if let Some(r) = sh.active.borrow().get(&id) {
                r.abort.fire(Stop::Terminated(signal));
            }
        }
        while let Some(q) = sh.queries[sh.index].pop() {
            q(sh);
        }
        if sh.running.get() >= max_running {
            park(wake.changed(seen)).await;
            continue;
        }
        let due = sh.ready.borrow_mut().pop_front();
        if let Some(held) = due {
            wake.notify();
            request::admit(sh, held);
            rt::yield_now().await;
            continue;
        }
        let next = local.pop().or_else(|| {
            let d = shared.steal.steal_into(sh.index, local)?;
            sh.stats().stolen.fetch_add(1 + local.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Some(d)
        });
        match next {
            Some(d) => {
                if !local.is_empty() {
                    shared.steal.offer(sh.index);
                }
                // A slot in the prefetch window opened: let the consumer fetch.
                wake.notify();
                request::start(sh, d);
                rt::yield_now().await;
            }
            None => {
                shared.steal.set_idle(sh.index, true);
                if let Some(d) = shared.steal.steal_into(sh.index, local) {
                    shared.steal.set_idle(sh.index, false);
                    sh.stats().stolen.fetch_add(1 + local.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    request::start(sh, d);
                    continue;
                }
                park(wake.changed(seen)).await;
                shared.steal.set_idle(sh.index, false);
            }
        }
    }
    rt::dispatching(false);
}

/// Starts between two runs of the shard's deferred work while it stays busy: the most result
/// writes one call carries in a steady drain.
const FLUSH_EVERY: u32 = 32;

/// Parks the run loop until `wake`: the deferred work of the run that ends goes first, and
/// work deferred while parked runs by itself.
async fn park(wake: impl std::future::Future<Output = ()>) {
    rt::dispatching(false);
    wake.await;
    rt::dispatching(true);
}

/// Warm shutdown: wait for running bodies, then return every reserved delivery to the broker.
/// Cold shutdown: return reserved deliveries at once.
async fn drain(sh: &Rc<ShardCtx>, local: &LocalQueue<Delivery>, consumer: &mut Consumer) {
    let shared = &sh.shared;
    let wake = &shared.steal.wake[sh.index];
    let mut returned = 0usize;
    for d in consumer.close().await {
        d.requeue();
        returned += 1;
    }
    while let Some(d) = local.pop() {
        d.requeue();
        returned += 1;
    }
    // Held ETA and rate-limited tasks, and those whose time just came, go back unrun.
    let due: Vec<_> = sh.ready.borrow_mut().drain(..).collect();
    for held in sh.timer.take_all().into_iter().chain(due) {
        held.settle.requeue(held.msg);
        returned += 1;
    }
    loop {
        let seen = wake.epoch();
        if shared.lifecycle.phase() == Phase::Cold {
            // Cold: running bodies are abandoned (Celery's WorkerLostError); they settle at once.
            for r in sh.active.borrow().values() {
                r.abort.fire(Stop::Lost);
            }
            if sh.running.get() == 0 {
                break;
            }
        } else if sh.running.get() + sh.storing.get() == 0 {
            break;
        }
        wake.changed(seen).await;
    }
    // Deliveries stolen into our queue while we waited.
    while let Some(d) = local.pop() {
        d.requeue();
        returned += 1;
    }
    // Every ack, result write and requeue queued on this shard reaches the broker before the
    // shard's executor ends.
    consumer.flush().await;
    if returned > 0 {
        tracing::info!("shard {}: returned {returned} reserved task(s) to the broker", sh.index);
    }
}
