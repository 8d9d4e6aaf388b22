//! Starting one delivery on a shard: decode, look up, check revocation, hold ETA and
//! rate-limited tasks on the shard's timer, check expiry, extract arguments, call under the time
//! limits, then store the outcome and settle the message the way Celery's `Request` does.
//! Sync bodies finish inline with no allocation for a future; async and blocking bodies are
//! spawned on the shard and can be terminated.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_lite::FutureExt;
use serde_json::{json, Value};

use crate::backend::{BackendError, Stored};
use crate::protocol::{
    json::parse_datetime, shorten, DecodedBody, ExceptionInfo, Headers, ProtocolError, ResultMeta, State, TaskMessage,
    EXC_MESSAGE_MAX, REPR_MAX, TRACEBACK_MAX,
};
use crate::rt;
use crate::task::{
    panic_error, Call, Control, CtxInner, Invocation, Outcome, ShardLocals, TaskCtx, TaskEntry, TaskError,
};
use crate::transport::{Delivery, Settle};

use super::pool::{Counters, WorkerShared};
use super::signal::Signal;
use super::timer::{Held, HoldKind, Timer};

/// One shard's view of the worker.
pub(crate) struct ShardCtx {
    pub index: usize,
    pub shared: Arc<WorkerShared>,
    pub locals: ShardLocals,
    /// Async and blocking bodies in flight on this shard.
    pub running: Cell<usize>,
    /// Result writes in flight (acks_late deliveries wait for theirs).
    pub storing: Cell<usize>,
    /// ETA and rate-limited deliveries waiting for their moment.
    pub timer: Timer,
    /// Held deliveries whose moment came, waiting for a run slot (served before the reserved
    /// queue).
    pub ready: RefCell<VecDeque<Held>>,
    /// Running spawned bodies by task id, for `terminate` and cold shutdown.
    pub active: RefCell<HashMap<String, Rc<Abort>>>,
}

impl ShardCtx {
    pub(crate) fn new(index: usize, shared: Arc<WorkerShared>) -> Self {
        ShardCtx {
            index,
            locals: ShardLocals::build(&shared.state_factories, index),
            shared,
            running: Cell::new(0),
            storing: Cell::new(0),
            timer: Timer::default(),
            ready: RefCell::new(VecDeque::new()),
            active: RefCell::new(HashMap::new()),
        }
    }

    fn wake(&self) {
        self.shared.steal.wake[self.index].notify();
    }

    /// This shard's counters.
    pub(crate) fn stats(&self) -> &Counters {
        &self.shared.stats[self.index]
    }
}

/// Why a running body was stopped from outside.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// `revoke(terminate=True)`, with the signal name the client asked for.
    Terminated(Option<String>),
    /// Cold shutdown: the worker abandons the task (Celery's `WorkerLostError`).
    Lost,
}

/// A one-shot stop signal for one running body.
#[derive(Default)]
pub(crate) struct Abort {
    why: RefCell<Option<Stop>>,
    waker: Cell<Option<Waker>>,
}

impl Abort {
    pub fn fire(&self, why: Stop) {
        self.why.borrow_mut().get_or_insert(why);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn fired(&self) -> impl Future<Output = Stop> + '_ {
        std::future::poll_fn(move |cx| match self.why.borrow().clone() {
            Some(why) => Poll::Ready(why),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

/// How a call ended.
enum Ended {
    Done(Outcome),
    /// The hard time limit (seconds) passed first.
    TimedOut(f64),
    Stopped(Stop),
}

/// What `result_extended` adds to a stored result, captured before the body runs.
pub(crate) struct Extended {
    args: Value,
    kwargs: Value,
    queue: String,
}

/// Starts `d` on shard `sh`.
pub(crate) fn start(sh: &Rc<ShardCtx>, d: Delivery) {
    let (mut msg, settle) = d.into_parts();
    let shared = &sh.shared;
    if let Some(why) = msg.headers.malformed.take() {
        let e = ProtocolError::Malformed(why);
        return reject_malformed(sh, &msg.headers, &msg.content_type, settle, e);
    }
    let body = match msg.decode_body(&shared.accept) {
        Ok(b) => b,
        Err(e) => return reject_malformed(sh, &msg.headers, &msg.content_type, settle, e),
    };
    let Some(entry) = shared.registry.get(&msg.headers.task).cloned() else {
        return reject_unregistered(sh, &msg.headers, settle);
    };
    if shared.revoked.contains(&msg.headers.id) {
        return discard_revoked(sh, &entry, &msg.headers, settle, "revoked");
    }
    for (what, value) in [("ETA", &msg.headers.eta), ("expires", &msg.headers.expires)] {
        if let Some(v) = value.as_deref().filter(|v| parse_datetime(v).is_none()) {
            // Celery: "Couldn't convert ETA ... to timestamp", and the message is rejected.
            let e = ProtocolError::Malformed(format!("couldn't convert {what} {:?} to a timestamp", shorten(v, 80)));
            return reject_malformed(sh, &msg.headers, &msg.content_type, settle, e);
        }
    }
    if let Some(eta) = msg.headers.eta.as_deref().and_then(parse_datetime) {
        let wait = (eta.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            warn_past_visibility(sh, &msg.headers, wait);
            let held = Held { entry, msg, body, settle, kind: HoldKind::Eta };
            return sh.timer.hold(Instant::now() + wait, held);
        }
    }
    admit(sh, Held { entry, msg, body, settle, kind: HoldKind::Eta });
}

/// A Redis message unacked longer than the visibility timeout is restored and delivered again
/// while this worker still holds it: Celery's known ETA caveat, so say it once a minute.
fn warn_past_visibility(sh: &ShardCtx, h: &Headers, wait: Duration) {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let Some(vt) = sh.shared.client.broker().visibility_timeout() else { return };
    if wait <= vt || LAST.get().is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return;
    }
    LAST.set(Some(Instant::now()));
    tracing::warn!(
        "Task {}[{}] has an ETA {:.0}s away, past the broker's visibility_timeout of {}s: it will be \
         delivered again (and may run twice) unless visibility_timeout in broker_transport_options is raised",
        h.task,
        h.id,
        wait.as_secs_f64(),
        vt.as_secs()
    );
}

/// A held delivery whose moment came: it queues for a run slot.
pub(crate) fn release(sh: &ShardCtx, held: Held) {
    sh.ready.borrow_mut().push_back(held);
    sh.wake();
}

/// Takes a rate-limit token for the task type, or holds the delivery until one is there.
pub(crate) fn admit(sh: &Rc<ShardCtx>, mut held: Held) {
    match sh.shared.rate_limits.acquire(&held.entry.name) {
        Ok(()) => run(sh, held.entry, held.msg, held.body, held.settle),
        Err(wait) => {
            held.kind = HoldKind::RateLimit;
            sh.timer.hold(Instant::now() + wait, held);
        }
    }
}

fn run(sh: &Rc<ShardCtx>, entry: Arc<TaskEntry>, msg: Box<TaskMessage>, body: DecodedBody, mut settle: Settle) {
    let shared = &sh.shared;
    // Revocation and expiry are checked again when the task is about to run (after any ETA or
    // rate-limit wait), as Celery does.
    if shared.revoked.contains(&msg.headers.id) {
        return discard_revoked(sh, &entry, &msg.headers, settle, "revoked");
    }
    if msg.headers.expires.as_deref().and_then(parse_datetime).is_some_and(|exp| exp <= Utc::now()) {
        return discard_revoked(sh, &entry, &msg.headers, settle, "expired");
    }
    let (hard, soft) = time_limits(shared, &entry, &msg.headers);
    let started = Instant::now();
    // The context owns the message, its body and where it came from (moved, not copied: a
    // settle needs only its queue and target); the arguments are parsed from the context's body.
    let ctx = TaskCtx::new(CtxInner {
        delivery_info: std::mem::take(&mut settle.info),
        hostname: shared.hostname.clone(),
        shard: sh.index,
        soft_deadline: soft.map(|s| started + Duration::from_secs_f64(s)),
        watches_soft_limit: std::sync::atomic::AtomicBool::new(entry.options.watches_soft_time_limit),
        backend: shared.client.backend().clone(),
        message: msg,
        body,
    });
    let parsed = match ctx.body().parse() {
        Ok(p) => p,
        Err(e) => return reject_malformed(sh, ctx.headers(), &ctx.message().content_type, settle, e),
    };
    let acks_late = entry.options.acks_late.unwrap_or(shared.acks_late);
    let settle = if acks_late {
        Some(settle)
    } else {
        settle.ack();
        None
    };
    let extended = shared.result_extended.then(|| Extended {
        args: json!(parsed.args_value()),
        kwargs: Value::Object(parsed.kwargs_value()),
        queue: ctx.delivery_info().routing_key.clone(),
    });
    if entry.options.track_started.unwrap_or(shared.track_started) && !ignores_result(sh, &entry, ctx.headers()) {
        let started = json!({"pid": std::process::id(), "hostname": &*shared.hostname});
        ctx.update_state("STARTED", started);
    }
    shared.hooks.send(&Signal::TaskPrerun { ctx: &ctx });
    let inv = Invocation { ctx: &ctx, body: &parsed, names: &entry.params, locals: &sh.locals, client: &shared.client };
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| entry.call(&inv)));
    drop(parsed);
    let outcome = match call {
        Ok(Ok(Call::Ready(o))) => o,
        Ok(Ok(Call::Pending(fut))) => {
            sh.running.set(sh.running.get() + 1);
            let abort = Rc::new(Abort::default());
            sh.active.borrow_mut().insert(ctx.id().to_owned(), abort.clone());
            let sh = sh.clone();
            rt::spawn_local(async move {
                let body = async {
                    match AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(o) => Ended::Done(o),
                        Err(p) => Ended::Done(Outcome::Failure(panic_error(p))),
                    }
                };
                let limits = async { watch_limits(&ctx, started, hard, soft).await };
                let stopped = async { Ended::Stopped(abort.fired().await) };
                let ended = body.or(limits).or(stopped).await;
                sh.active.borrow_mut().remove(ctx.id());
                finish(&sh, &entry, &ctx, ended, started, settle, extended);
                sh.running.set(sh.running.get() - 1);
                sh.wake();
            });
            return;
        }
        Ok(Err(arg_error)) => Outcome::Failure(arg_error),
        Err(p) => Outcome::Failure(panic_error(p)),
    };
    // A sync body cannot be interrupted; one that ran past a limit is treated as Celery treats
    // a killed (hard) or interrupted (soft) one.
    let ended = inline_ended(&ctx, outcome, started, hard, soft);
    finish(sh, &entry, &ctx, ended, started, settle, extended);
}

/// `(hard, soft)` seconds: the message's `timelimit` header, else the task's options, else the
/// worker's `task_time_limit`/`task_soft_time_limit`.
fn time_limits(shared: &WorkerShared, entry: &TaskEntry, h: &Headers) -> (Option<f64>, Option<f64>) {
    let (hard, soft) = h.time_limits();
    let hard = hard.or(entry.options.time_limit).or(shared.time_limit).filter(|s| *s > 0.0);
    let soft = soft.or(entry.options.soft_time_limit).or(shared.soft_time_limit).filter(|s| *s > 0.0);
    (hard, soft)
}

/// Completes when a limit stops the body: at the soft limit, unless the body watches it itself
/// (then it is only logged), else at the hard limit; never without either.
async fn watch_limits(ctx: &TaskCtx, started: Instant, hard: Option<f64>, soft: Option<f64>) -> Ended {
    let at = |secs: f64| (started + Duration::from_secs_f64(secs)).saturating_duration_since(Instant::now());
    if let Some(s) = soft.filter(|s| hard.is_none_or(|h| *s < h)) {
        rt::sleep(at(s)).await;
        tracing::warn!("Soft time limit ({s}s) exceeded for {}[{}]", ctx.name(), ctx.id());
        if !ctx.watches_soft_limit() {
            // Celery raises SoftTimeLimitExceeded inside the body; here the body is dropped at
            // its current await (a blocking one is abandoned to its pool thread, as at the hard
            // limit) and the raise becomes the outcome, retried or stored like any failure.
            return Ended::Done(Outcome::Failure(TaskError::soft_time_limit_exceeded()));
        }
    }
    match hard {
        Some(h) => {
            rt::sleep(at(h)).await;
            Ended::TimedOut(h)
        }
        None => std::future::pending().await,
    }
}

/// How a sync body that ran inline ended, given the limits it could not be stopped at: past the
/// hard limit its result is dropped for TimeLimitExceeded; past the soft limit, unless it watched
/// the limit itself, for SoftTimeLimitExceeded (what Python's raise inside it would have done).
fn inline_ended(ctx: &TaskCtx, outcome: Outcome, started: Instant, hard: Option<f64>, soft: Option<f64>) -> Ended {
    let took = started.elapsed().as_secs_f64();
    match (hard, soft) {
        (Some(h), _) if took > h => Ended::TimedOut(h),
        (_, Some(s)) if took > s && !ctx.watches_soft_limit() => {
            tracing::warn!("Soft time limit ({s}s) exceeded for {}[{}]", ctx.name(), ctx.id());
            Ended::Done(Outcome::Failure(TaskError::soft_time_limit_exceeded()))
        }
        _ => Ended::Done(outcome),
    }
}

fn finish(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    ctx: &TaskCtx,
    ended: Ended,
    started: Instant,
    settle: Option<Settle>,
    extended: Option<Extended>,
) {
    let took = started.elapsed().as_secs_f64();
    let h = ctx.headers();
    let shared = &sh.shared;
    sh.stats().processed.fetch_add(1, Ordering::Relaxed);
    let acks_on_failure = entry.options.acks_on_failure_or_timeout.unwrap_or(shared.acks_on_failure_or_timeout);
    let e = match ended {
        Ended::Done(Outcome::Success(v)) => {
            tracing::debug!("Task {}[{}] succeeded in {took:.6}s", h.task, h.id);
            shared.hooks.send(&Signal::TaskPostrun { ctx, state: &State::Success, retval: &v });
            shared.hooks.send(&Signal::TaskSuccess { ctx, result: &v });
            let after = settle.map(After::ack);
            return store_with(sh, entry, h, extended, State::Success, v, None, after);
        }
        Ended::Done(Outcome::Failure(e)) => e,
        Ended::TimedOut(limit) => {
            tracing::error!("Hard time limit ({limit}s) exceeded for {}[{}]", h.task, h.id);
            let exc = ExceptionInfo {
                exc_type: "TimeLimitExceeded".into(),
                exc_message: json!([limit]),
                exc_module: "billiard.exceptions".into(),
            };
            // Celery: ack a timed-out acks_late task, or requeue it when acks_on_timeout is off.
            let how = if acks_on_failure { Settled::Ack } else { Settled::Requeue };
            let after = settle.map(|s| After::new(s, how, ctx));
            return fail(sh, entry, ctx, TaskError::from_exception(exc), extended, after);
        }
        Ended::Stopped(Stop::Terminated(signum)) => {
            let sig = signum.as_deref().unwrap_or("SIGTERM");
            tracing::info!("Terminated {}[{}] (signal {sig})", h.task, h.id);
            shared.hooks.send(&Signal::TaskRevoked { headers: h, terminated: true, signum: Some(sig), expired: false });
            let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", "terminated");
            let after = settle.map(After::ack);
            return store_with(sh, entry, h, None, State::Revoked, exc.to_value(), None, after);
        }
        Ended::Stopped(Stop::Lost) => {
            let requeue = entry.options.reject_on_worker_lost.unwrap_or(shared.reject_on_worker_lost);
            match settle {
                Some(s) if requeue => {
                    tracing::warn!("Task {}[{}] abandoned by a cold shutdown: returned to its queue", h.task, h.id);
                    After::new(s, Settled::Requeue, ctx).done();
                }
                settle => {
                    let exc = ExceptionInfo::new(
                        "billiard.exceptions",
                        "WorkerLostError",
                        "Worker exited prematurely: cold shutdown.",
                    );
                    fail(sh, entry, ctx, TaskError::from_exception(exc), extended, settle.map(After::ack));
                }
            }
            return;
        }
    };
    match e.control() {
        Some(Control::Retry(r)) => super::retry::retry(sh, entry, ctx, r.clone(), None, settle),
        Some(Control::Reject(r)) => {
            tracing::info!("Task {}[{}] rejected (requeue={})", h.task, h.id, r.requeue);
            match settle {
                Some(s) if r.requeue => After::new(s, Settled::Requeue, ctx).done(),
                // Celery 5.7 stores FAILURE for a reject that drops the message (#4222).
                settle => fail(sh, entry, ctx, e.clone(), extended, settle.map(After::ack)),
            }
        }
        Some(Control::Ignore) => {
            if let Some(s) = settle {
                s.ack();
            }
        }
        None if entry.options.autoretries(&e.exception().exc_type) => {
            let retry = super::retry::automatic(entry, ctx, &e);
            super::retry::retry(sh, entry, ctx, retry, Some(e), settle)
        }
        None => fail_settled(sh, entry, ctx, e, extended, settle),
    }
}

/// A task failure, settled as Celery does: acked, or rejected (dropped) when
/// `acks_on_failure_or_timeout` is off.
pub(crate) fn fail_settled(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    ctx: &TaskCtx,
    e: TaskError,
    extended: Option<Extended>,
    settle: Option<Settle>,
) {
    let acks = entry.options.acks_on_failure_or_timeout.unwrap_or(sh.shared.acks_on_failure_or_timeout);
    let how = if acks { Settled::Ack } else { Settled::Reject };
    fail(sh, entry, ctx, e, extended, settle.map(|s| After::new(s, how, ctx)))
}

/// How an unacked delivery ends once its outcome is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Ack,
    /// Dropped (kombu: the same as an ack on Redis).
    Reject,
    /// Back to its queue, marked redelivered.
    Requeue,
}

/// An unacked delivery and how to settle it after the outcome is stored.
pub(crate) struct After {
    settle: Settle,
    how: Settled,
    /// The message, kept only to requeue it (the memory broker puts the message itself back).
    message: Option<Box<TaskMessage>>,
}

impl After {
    pub fn ack(settle: Settle) -> Self {
        After { settle, how: Settled::Ack, message: None }
    }

    pub fn new(settle: Settle, how: Settled, ctx: &TaskCtx) -> Self {
        let message = (how == Settled::Requeue).then(|| Box::new(ctx.message().clone()));
        After { settle, how, message }
    }

    /// The outcome could not be stored: the message is not acked as done but left with the
    /// broker to deliver again (as after a crash with acks_late).
    pub fn undone(self) {
        self.settle.abandon()
    }

    pub fn done(self) {
        match (self.how, self.message) {
            (Settled::Requeue, Some(m)) => self.settle.requeue(m),
            (Settled::Reject, _) => self.settle.reject(),
            _ => self.settle.ack(),
        }
    }
}

/// A FAILURE: logged, hooked, stored; the delivery settled after the write.
pub(crate) fn fail(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    ctx: &TaskCtx,
    e: TaskError,
    extended: Option<Extended>,
    after: Option<After>,
) {
    let h = ctx.headers();
    let shared = &sh.shared;
    sh.stats().failed.fetch_add(1, Ordering::Relaxed);
    // Bounded as Celery's saferepr bounds reprs: an error that quotes a huge argument must cost
    // neither a huge stored FAILURE nor a huge log line.
    let bounded = e.exception().clone().bounded(EXC_MESSAGE_MAX);
    tracing::error!("Task {}[{}] raised unexpected: {}", h.task, h.id, shorten(&bounded.repr(), REPR_MAX));
    let tb = match e.traceback() {
        Some(tb) => shorten(tb, TRACEBACK_MAX).into_owned(),
        None => synthetic_traceback(&shared.hostname, h, &bounded),
    };
    let exc = bounded.to_value();
    shared.hooks.send(&Signal::TaskPostrun { ctx, state: &State::Failure, retval: &exc });
    shared.hooks.send(&Signal::TaskFailure { ctx, exception: e.exception(), traceback: Some(&tb) });
    store_with(sh, entry, h, extended, State::Failure, exc, Some(tb), after)
}

/// Python-style traceback text for a Rust failure, so `AsyncResult.traceback` has something to
/// show (the frames are the worker's, not Python's).
fn synthetic_traceback(hostname: &str, h: &Headers, exc: &ExceptionInfo) -> String {
    let qual = if exc.exc_module == "builtins" {
        exc.exc_type.clone()
    } else {
        format!("{}.{}", exc.exc_module, exc.exc_type)
    };
    format!(
        "Traceback (most recent call last):\n  File \"celeriac worker {hostname}\", in {}\n{qual}: {}\n",
        h.task,
        exc.message()
    )
}

fn ignores_result(sh: &ShardCtx, entry: &TaskEntry, h: &Headers) -> bool {
    h.ignores_result() || entry.options.ignore_result.unwrap_or(sh.shared.ignore_result)
}

/// A revoked or expired task: acked and dropped, REVOKED stored (Celery's
/// `TaskRevokedError("revoked" | "expired")`).
fn discard_revoked(sh: &Rc<ShardCtx>, entry: &TaskEntry, h: &Headers, settle: Settle, why: &str) {
    tracing::info!("Discarding revoked task: {}[{}] ({why})", h.task, h.id);
    let expired = why == "expired";
    sh.shared.hooks.send(&Signal::TaskRevoked { headers: h, terminated: false, signum: None, expired });
    let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", why);
    store_with(sh, entry, h, None, State::Revoked, exc.to_value(), None, Some(After::ack(settle)));
}

/// Stores the result unless it is ignored, then settles the delivery (if still unacked) once
/// the write is done: with acks_late a message is acked only after its result is stored.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_with(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    h: &Headers,
    extended: Option<Extended>,
    state: State,
    result: Value,
    traceback: Option<String>,
    after: Option<After>,
) {
    if ignores_result(sh, entry, h) {
        if let Some(a) = after {
            a.done();
        }
        return;
    }
    store_meta(sh, h, extended, state, result, traceback, after);
}

fn store_meta(
    sh: &Rc<ShardCtx>,
    h: &Headers,
    extended: Option<Extended>,
    state: State,
    result: Value,
    traceback: Option<String>,
    after: Option<After>,
) {
    let shared = &sh.shared;
    let mut meta = ResultMeta::new(&h.id, state, result);
    meta.traceback = traceback;
    meta.group_id = h.group.clone();
    meta.parent_id = h.parent_id.clone();
    if let Some(Extended { args, kwargs, queue }) = extended {
        meta.name = Some(h.task.clone());
        meta.args = Some(args);
        meta.kwargs = Some(kwargs);
        meta.worker = Some(String::from(&*shared.hostname));
        meta.retries = Some(h.retries);
        meta.queue = Some(queue);
    }
    match shared.client.backend().store(meta) {
        Stored::Done(r) => stored(sh, h, r, after),
        Stored::Pending(write) => {
            let what = (h.task.clone(), h.id.clone());
            sh.storing.set(sh.storing.get() + 1);
            let sh = sh.clone();
            rt::spawn_local(async move {
                let r = write.or(store_deadline(&sh)).await;
                stored_as(&sh, &what.0, &what.1, r, after);
                sh.storing.set(sh.storing.get() - 1);
                sh.wake();
            });
        }
    }
}

/// How long a result write still retrying may hold a shutdown.
const STORE_GRACE: Duration = Duration::from_secs(5);

/// Fails a result write [`STORE_GRACE`] after a shutdown began: a dead store must not hold the
/// worker for ever (the write's own retries stop after a minute anyway).
async fn store_deadline(sh: &ShardCtx) -> Result<(), BackendError> {
    let wake = &sh.shared.steal.wake[sh.index];
    loop {
        let seen = wake.epoch();
        if !sh.shared.lifecycle.is_running() {
            break;
        }
        wake.changed(seen).await;
    }
    rt::sleep(STORE_GRACE).await;
    Err(BackendError::ConnectionLost(format!("still failing {}s into the shutdown", STORE_GRACE.as_secs())))
}

fn stored(sh: &ShardCtx, h: &Headers, r: Result<(), BackendError>, after: Option<After>) {
    stored_as(sh, &h.task, &h.id, r, after)
}

/// Settles a delivery once its outcome's write ended: acked (or as decided) when stored; when
/// the store refused it, counted, logged with the task, and left unacked for the broker to
/// deliver again (an early-acked message is gone already: only the count and the log remain).
fn stored_as(sh: &ShardCtx, task: &str, id: &str, r: Result<(), BackendError>, after: Option<After>) {
    match r {
        Ok(()) => {
            if let Some(a) = after {
                a.done();
            }
        }
        Err(e) => {
            sh.stats().store_failed.fetch_add(1, Ordering::Relaxed);
            match after {
                Some(a) => {
                    tracing::error!(
                        "Cannot store the result of {task}[{id}]: {e}. The message is left unacked for redelivery."
                    );
                    a.undone();
                }
                None => tracing::error!("Cannot store the result of {task}[{id}]: {e}. The result is lost."),
            }
        }
    }
}

/// A message we cannot decode: logged with its name and id, rejected without requeue (it would
/// fail again), and, when its id is known, marked FAILURE so a waiting client fails fast.
fn reject_malformed(sh: &Rc<ShardCtx>, h: &Headers, content_type: &str, settle: Settle, e: ProtocolError) {
    let task = if h.task.is_empty() { "<unknown>" } else { &h.task };
    let id = if h.id.is_empty() { "<no id>" } else { &h.id };
    tracing::error!(
        "Can't decode message body of task {}[{}] (content-type {:?}, queue {:?}): {}. The message has been rejected.",
        shorten(task, REPR_MAX),
        shorten(id, REPR_MAX),
        shorten(content_type, REPR_MAX),
        settle.queue.as_ref(),
        shorten(&e.to_string(), REPR_MAX)
    );
    sh.stats().rejected.fetch_add(1, Ordering::Relaxed);
    if !h.id.is_empty() && !h.ignores_result() {
        let (module, ty) = match e {
            ProtocolError::ContentDisallowed { .. } => ("kombu.exceptions", "ContentDisallowed"),
            _ => ("kombu.exceptions", "DecodeError"),
        };
        let exc = ExceptionInfo::new(module, ty, e.to_string()).bounded(EXC_MESSAGE_MAX);
        store_meta(sh, h, None, State::Failure, exc.to_value(), None, Some(After::ack(settle)));
        return;
    }
    settle.reject();
}

/// An unknown task name: reported the way Celery does (error log, FAILURE `NotRegistered`,
/// message rejected without requeue).
fn reject_unregistered(sh: &Rc<ShardCtx>, h: &Headers, settle: Settle) {
    tracing::error!(
        "Received unregistered task of type {:?} (id {}). The message has been ignored and discarded.",
        shorten(&h.task, REPR_MAX),
        shorten(&h.id, REPR_MAX)
    );
    sh.stats().rejected.fetch_add(1, Ordering::Relaxed);
    if !h.ignores_result() {
        let exc = ExceptionInfo::new("celery.exceptions", "NotRegistered", format!("'{}'", h.task));
        let exc = ExceptionInfo { exc_message: json!([h.task]), ..exc };
        store_meta(sh, h, None, State::Failure, exc.to_value(), None, Some(After::ack(settle)));
        return;
    }
    settle.reject();
}
