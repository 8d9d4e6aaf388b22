//! Starting one delivery on a shard: decode, look up, check expiry and ETA, extract arguments,
//! call, store the result, settle the message. Sync bodies finish inline with no allocation for
//! a future; async bodies are spawned on the shard.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_lite::FutureExt;
use serde_json::{json, Value};

use crate::backend::Stored;
use crate::protocol::{
    json::parse_datetime, DecodedBody, ExceptionInfo, Headers, ProtocolError, ResultMeta, State, TaskMessage,
};
use crate::rt;
use crate::task::{panic_error, Call, Invocation, Outcome, ShardLocals, TaskCtx, TaskEntry, TaskError};
use crate::transport::{Delivery, Settle};

use super::pool::WorkerShared;

/// One shard's view of the worker.
pub(crate) struct ShardCtx {
    pub index: usize,
    pub shared: Arc<WorkerShared>,
    pub locals: ShardLocals,
    /// Async bodies in flight on this shard.
    pub running: Cell<usize>,
    /// ETA tasks held unacked on this shard's timers (outside prefetch, as Celery does).
    pub held: Cell<usize>,
    /// Result writes in flight (acks_late deliveries wait for theirs).
    pub storing: Cell<usize>,
}

impl ShardCtx {
    fn wake(&self) {
        self.shared.steal.wake[self.index].notify();
    }
}

/// What `result_extended` adds to a stored result, captured before the body runs.
struct Extended {
    args: Value,
    kwargs: Value,
    queue: String,
}

/// Starts `d` on shard `sh`.
pub(crate) fn start(sh: &Rc<ShardCtx>, d: Delivery) {
    let (mut msg, settle) = d.into_parts();
    let shared = &sh.shared;
    let body = match msg.decode_body(&shared.accept) {
        Ok(b) => b,
        Err(e) => return reject_malformed(sh, &msg.headers, &msg.content_type, settle, e),
    };
    let Some(entry) = shared.registry.get(&msg.headers.task).cloned() else {
        return reject_unregistered(sh, &msg.headers, settle);
    };
    let now = Utc::now();
    if let Some(eta) = msg.headers.eta.as_deref().and_then(parse_datetime) {
        let wait = (eta.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            return hold_until(sh, entry, msg, body, settle, wait);
        }
    }
    run(sh, entry, msg, body, settle);
}

/// Keeps an ETA task unacked on the shard's timer, then runs it; at shutdown it goes back to
/// the broker.
fn hold_until(
    sh: &Rc<ShardCtx>,
    entry: Arc<TaskEntry>,
    msg: TaskMessage,
    body: DecodedBody,
    settle: Settle,
    wait: Duration,
) {
    let sh = sh.clone();
    sh.held.set(sh.held.get() + 1);
    rt::spawn_local(async move {
        let wake = &sh.shared.steal.wake[sh.index];
        let deadline = Instant::now() + wait;
        loop {
            let seen = wake.epoch();
            if !sh.shared.lifecycle.is_running() {
                settle.requeue(msg);
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                run(&sh, entry, msg, body, settle);
                break;
            }
            futures_lite::future::or(rt::sleep(left), wake.changed(seen)).await;
        }
        sh.held.set(sh.held.get() - 1);
    });
}

fn run(sh: &Rc<ShardCtx>, entry: Arc<TaskEntry>, msg: TaskMessage, body: DecodedBody, settle: Settle) {
    let shared = &sh.shared;
    // Expiry is checked when the task is about to run (after any ETA wait), as Celery does.
    if let Some(exp) = msg.headers.expires.as_deref().and_then(parse_datetime) {
        if exp <= Utc::now() {
            tracing::info!("Discarding revoked task: {}[{}] (expired)", msg.headers.task, msg.headers.id);
            let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", "expired");
            store(sh, &entry, &msg.headers, State::Revoked, exc.to_value(), settle);
            return;
        }
    }
    let parsed = match body.parse() {
        Ok(p) => p,
        Err(e) => return reject_malformed(sh, &msg.headers, &msg.content_type, settle, e),
    };
    let info = settle.info.clone();
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
        queue: info.routing_key.clone(),
    });
    let ctx = TaskCtx::new(msg.headers, info, shared.hostname.clone(), sh.index);
    let inv = Invocation { ctx: &ctx, body: &parsed, names: &entry.params, locals: &sh.locals, client: &shared.client };
    let started = Instant::now();
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| entry.call(&inv)));
    let outcome = match call {
        Ok(Ok(Call::Ready(o))) => o,
        Ok(Ok(Call::Pending(fut))) => {
            sh.running.set(sh.running.get() + 1);
            let sh = sh.clone();
            rt::spawn_local(async move {
                let outcome = match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(o) => o,
                    Err(p) => Outcome::Failure(panic_error(p)),
                };
                finish(&sh, &entry, &ctx, outcome, started, settle, extended);
                sh.running.set(sh.running.get() - 1);
                sh.wake();
            });
            return;
        }
        Ok(Err(arg_error)) => Outcome::Failure(arg_error),
        Err(p) => Outcome::Failure(panic_error(p)),
    };
    finish(sh, &entry, &ctx, outcome, started, settle, extended);
}

#[allow(clippy::too_many_arguments)]
fn finish(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    ctx: &TaskCtx,
    outcome: Outcome,
    started: Instant,
    settle: Option<Settle>,
    extended: Option<Extended>,
) {
    let took = started.elapsed().as_secs_f64();
    let h = ctx.headers();
    let stats = &sh.shared.stats;
    stats.processed.fetch_add(1, Ordering::Relaxed);
    stats.per_shard[sh.index].fetch_add(1, Ordering::Relaxed);
    match outcome {
        Outcome::Success(v) => {
            tracing::debug!("Task {}[{}] succeeded in {took:.6}s", h.task, h.id);
            store_with(sh, entry, h, extended, State::Success, v, None, settle);
        }
        Outcome::Failure(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!("Task {}[{}] raised unexpected: {}", h.task, h.id, e.exception().repr());
            let tb =
                e.traceback().map(str::to_owned).unwrap_or_else(|| synthetic_traceback(&sh.shared.hostname, h, &e));
            store_with(sh, entry, h, extended, State::Failure, e.exception().to_value(), Some(tb), settle);
        }
    }
}

/// Python-style traceback text for a Rust failure, so `AsyncResult.traceback` has something to
/// show (the frames are the worker's, not Python's).
fn synthetic_traceback(hostname: &str, h: &Headers, e: &TaskError) -> String {
    let exc = e.exception();
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

fn store(sh: &Rc<ShardCtx>, entry: &TaskEntry, h: &Headers, state: State, result: Value, settle: Settle) {
    store_with(sh, entry, h, None, state, result, None, Some(settle))
}

/// Stores the result unless it is ignored, then settles the delivery (if still unacked) once
/// the write is done: with acks_late a message is acked only after its result is stored.
#[allow(clippy::too_many_arguments)]
fn store_with(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    h: &Headers,
    extended: Option<Extended>,
    state: State,
    result: Value,
    traceback: Option<String>,
    settle: Option<Settle>,
) {
    let shared = &sh.shared;
    if h.ignores_result() || entry.options.ignore_result.unwrap_or(shared.ignore_result) {
        if let Some(s) = settle {
            s.ack();
        }
        return;
    }
    store_meta(sh, h, extended, state, result, traceback, settle);
}

#[allow(clippy::too_many_arguments)]
fn store_meta(
    sh: &Rc<ShardCtx>,
    h: &Headers,
    extended: Option<Extended>,
    state: State,
    result: Value,
    traceback: Option<String>,
    settle: Option<Settle>,
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
        meta.worker = Some(shared.hostname.to_string());
        meta.retries = Some(h.retries);
        meta.queue = Some(queue);
    }
    let what = format!("{}[{}]", h.task, h.id);
    match shared.client.backend().store(meta) {
        Stored::Done(r) => {
            if let Err(e) = r {
                tracing::error!("Cannot store the result of {what}: {e}");
            }
            if let Some(s) = settle {
                s.ack();
            }
        }
        Stored::Pending(write) => {
            sh.storing.set(sh.storing.get() + 1);
            let sh = sh.clone();
            rt::spawn_local(async move {
                if let Err(e) = write.await {
                    tracing::error!("Cannot store the result of {what}: {e}");
                }
                if let Some(s) = settle {
                    s.ack();
                }
                sh.storing.set(sh.storing.get() - 1);
                sh.wake();
            });
        }
    }
}

/// A message we cannot decode: logged with its name and id, rejected without requeue (it would
/// fail again), and, when its id is known, marked FAILURE so a waiting client fails fast.
fn reject_malformed(sh: &Rc<ShardCtx>, h: &Headers, content_type: &str, settle: Settle, e: ProtocolError) {
    let task = if h.task.is_empty() { "<unknown>" } else { &h.task };
    let id = if h.id.is_empty() { "<no id>" } else { &h.id };
    tracing::error!(
        "Can't decode message body of task {task}[{id}] (content-type {content_type:?}, queue {:?}): {e}. The message has been rejected.",
        settle.queue.as_ref()
    );
    sh.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
    if !h.id.is_empty() && !h.ignores_result() {
        let (module, ty) = match e {
            ProtocolError::ContentDisallowed { .. } => ("kombu.exceptions", "ContentDisallowed"),
            _ => ("kombu.exceptions", "DecodeError"),
        };
        let exc = ExceptionInfo::new(module, ty, e.to_string());
        store_meta(sh, h, None, State::Failure, exc.to_value(), None, Some(settle));
        return;
    }
    settle.reject();
}

/// An unknown task name: reported the way Celery does (error log, FAILURE `NotRegistered`,
/// message rejected without requeue).
fn reject_unregistered(sh: &Rc<ShardCtx>, h: &Headers, settle: Settle) {
    tracing::error!(
        "Received unregistered task of type {:?} (id {}). The message has been ignored and discarded.",
        h.task,
        h.id
    );
    sh.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
    if !h.ignores_result() {
        let exc = ExceptionInfo::new("celery.exceptions", "NotRegistered", format!("'{}'", h.task));
        let exc = ExceptionInfo { exc_message: json!([h.task]), ..exc };
        store_meta(sh, h, None, State::Failure, exc.to_value(), None, Some(settle));
        return;
    }
    settle.reject();
}
