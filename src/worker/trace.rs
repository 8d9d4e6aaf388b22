//! Running one task, Celery's `app/trace.py`: the context, the call under the time limits, and
//! what its outcome means (success, failure, retry, reject, ignore, a limit, a stop), recorded
//! through [`outcome`](super::outcome).

use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_lite::FutureExt;
use serde_json::{json, Value};

use crate::protocol::{json::parse_datetime, DecodedBody, ExceptionInfo, Headers, State, TaskMessage};
use crate::rt;
use crate::task::{panic_error, Call, Control, CtxInner, Invocation, Outcome, TaskCtx, TaskEntry, TaskError};
use crate::transport::Settle;

use super::outcome::{discard_revoked, fail, fail_settled, ignores_result, reject_malformed, store_with, Extended, Of};
use super::settlement::{After, Settled};
use super::shard_ctx::{Abort, ShardCtx, Stop};
use super::shared::WorkerShared;
use super::signal::Signal;

/// How a call ended.
enum Ended {
    Done(Outcome),
    /// The hard time limit (seconds) passed first.
    TimedOut(f64),
    Stopped(Stop),
}

pub(crate) fn run(
    sh: &Rc<ShardCtx>,
    entry: Arc<TaskEntry>,
    msg: Box<TaskMessage>,
    body: DecodedBody,
    mut settle: Settle,
) {
    let shared = &sh.shared;
    // Revocation and expiry are checked again when the task is about to run (after any ETA or
    // rate-limit wait), as Celery does.
    if shared.revoked.contains(&msg.headers.id) {
        return discard_revoked(sh, &entry, &msg, &body, settle, "revoked");
    }
    if msg.headers.expires.as_deref().and_then(parse_datetime).is_some_and(|exp| exp <= Utc::now()) {
        return discard_revoked(sh, &entry, &msg, &body, settle, "expired");
    }
    let (hard, soft) = time_limits(shared, &entry, &msg.headers);
    let started = Instant::now();
    // The context owns the message, its body and where it came from (moved, not copied: a
    // settle needs only its queue and target); the arguments are parsed from the context's body.
    let ctx = TaskCtx::new(CtxInner {
        queue: (!settle.info.exchange.is_empty()).then(|| settle.queue.clone()),
        delivery_info: std::mem::take(&mut settle.info),
        hostname: shared.hostname.clone(),
        shard: sh.index,
        soft_deadline: soft.map(|s| started + Duration::from_secs_f64(s)),
        watches_soft_limit: std::sync::atomic::AtomicBool::new(entry.options.watches_soft_time_limit),
        backend: shared.client.backend().clone(),
        message: msg,
        body,
        embed: std::sync::OnceLock::new(),
    });
    let mut parsed = match ctx.body().parse() {
        Ok(p) => p,
        Err(e) => return reject_malformed(sh, ctx.message(), settle, e),
    };
    let e = &parsed.embed;
    if e.callbacks.as_ref().is_some_and(|c| !c.is_empty())
        || e.errbacks.as_ref().is_some_and(|c| !c.is_empty())
        || e.chain.as_ref().is_some_and(|c| !c.is_empty())
        || e.chord.is_some()
    {
        // Moved, not cloned: the body's arguments are all the task needs of it.
        let _ = ctx.0.embed.set(std::mem::take(&mut parsed.embed));
    }
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
    sh.stats().started.fetch_add(1, Ordering::Relaxed);
    super::events::started(shared, ctx.id());
    let inv = Invocation {
        ctx: &ctx,
        body: &parsed,
        names: &entry.params,
        locals: &sh.locals,
        client: &shared.client,
        tasks: &*shared.registry,
    };
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| entry.call(&inv)));
    drop(parsed);
    let outcome = match call {
        Ok(Ok(Call::Ready(o))) => o,
        Ok(Ok(Call::Pending(fut))) => {
            sh.running.set(sh.running.get() + 1);
            let abort = Rc::new(Abort::default());
            let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let running =
                super::shard_ctx::Running { abort: abort.clone(), ctx: ctx.clone(), since: since.as_secs_f64() };
            sh.active.borrow_mut().insert(ctx.id().to_owned(), running);
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

/// `(hard, soft)` seconds: the message's `timelimit` header, else what the `time_limit` command
/// set, else the task's options, else the worker's `task_time_limit`/`task_soft_time_limit`.
fn time_limits(shared: &WorkerShared, entry: &TaskEntry, h: &Headers) -> (Option<f64>, Option<f64>) {
    let (hard, soft) = h.time_limits();
    let (set_soft, set_hard) = shared.time_limits.get(&h.task);
    let hard = hard.or(set_hard).or(entry.options.time_limit).or(shared.time_limit).filter(|s| *s > 0.0);
    let soft = soft.or(set_soft).or(entry.options.soft_time_limit).or(shared.soft_time_limit).filter(|s| *s > 0.0);
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
    {
        let mut totals = sh.totals.borrow_mut();
        if let Some(n) = totals.get_mut(&h.task) {
            *n += 1;
        } else {
            totals.insert(h.task.clone(), 1);
        }
    }
    let acks_on_failure = entry.options.acks_on_failure_or_timeout.unwrap_or(shared.acks_on_failure_or_timeout);
    let e = match ended {
        Ended::Done(Outcome::Success(v)) => {
            if tracing::enabled!(tracing::Level::INFO) {
                let r = crate::protocol::py_repr(&v);
                tracing::info!(
                    "Task {}[{}] succeeded in {took:.6}s: {}",
                    h.task,
                    h.id,
                    crate::protocol::shorten(&r, 200)
                );
            }
            super::events::succeeded(shared, &h.id, &v, took);
            shared.hooks.send(&Signal::TaskPostrun { ctx, state: &State::Success, retval: &v });
            shared.hooks.send(&Signal::TaskSuccess { ctx, result: &v });
            let after = settle.map(After::ack);
            return store_with(sh, entry, Of::Ran(ctx), extended, State::Success, v, None, after);
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
            super::events::revoked(shared, &h.id, true, Some(sig), false);
            let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", "terminated");
            let after = settle.map(After::ack);
            return store_with(sh, entry, Of::Ran(ctx), None, State::Revoked, exc.to_value(), None, after);
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
