//! Retries as Celery's `Task.retry` and `autoretry_for` do them (PROTOCOL.md §8.3): the same
//! task id republished to the same queue with `retries + 1` and an ETA, RETRY stored with the
//! cause, the original message acked; past `max_retries` the cause is the FAILURE.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;

use crate::protocol::{
    encode_json_body, json::format_datetime, shorten, ContentType, ExceptionInfo, State, TaskMessage, REPR_MAX,
};
use crate::task::{Retry, TaskCtx, TaskEntry, TaskError};
use crate::transport::{Route, Settle};

use super::outcome::{fail_settled, store_with, Of};
use super::settlement::After;
use super::shard_ctx::ShardCtx;
use super::signal::Signal;

/// Celery's `Task.max_retries` and `Task.default_retry_delay`.
const MAX_RETRIES: u32 = 3;
const DEFAULT_RETRY_DELAY: f64 = 180.0;

/// The retry `autoretry_for` makes of error `e`: with `retry_backoff`, a countdown of
/// `factor * 2^retries` seconds capped at `retry_backoff_max`, fully jittered unless
/// `retry_jitter` is off (`get_exponential_backoff_interval`); else `default_retry_delay`.
pub(crate) fn automatic(entry: &TaskEntry, ctx: &TaskCtx, e: &TaskError) -> Retry {
    let o = &entry.options;
    let retry = Retry::new().exc(e.clone());
    match o.retry_backoff.filter(|f| *f > 0.0) {
        Some(f) => {
            // Celery takes `int(max(1.0, retry_backoff))`.
            let factor = f.max(1.0) as u64;
            let max = o.retry_backoff_max.unwrap_or(600);
            let mut countdown = factor.saturating_mul(1u64 << ctx.retries().min(62)).min(max);
            if o.retry_jitter.unwrap_or(true) {
                countdown = fastrand::u64(0..=countdown);
            }
            retry.countdown(countdown as f64)
        }
        None => retry,
    }
}

/// Republishes the task for another attempt (or fails it, past `max_retries`).
pub(crate) fn retry(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    ctx: &TaskCtx,
    r: Retry,
    cause: Option<TaskError>,
    settle: Option<Settle>,
) {
    let h = ctx.headers();
    let max = r.max_retries.unwrap_or(entry.options.max_retries.unwrap_or(Some(MAX_RETRIES)));
    let retries = h.retries + 1;
    let traceback = cause.as_ref().and_then(|c| c.traceback().map(str::to_owned));
    if max.is_some_and(|m| retries > m) {
        let e = match (r.exc, cause) {
            (Some(exc), _) => TaskError::from_exception(exc),
            (None, Some(c)) => c,
            (None, None) => TaskError::with_module(
                "celery.exceptions",
                "MaxRetriesExceededError",
                format!(
                    "Can't retry {}[{}] args:{} kwargs:{}",
                    h.task,
                    h.id,
                    shorten(h.argsrepr.as_deref().unwrap_or("()"), REPR_MAX),
                    shorten(h.kwargsrepr.as_deref().unwrap_or("{}"), REPR_MAX)
                ),
            ),
        };
        let e = match traceback {
            Some(tb) => e.with_traceback(tb),
            None => e,
        };
        return fail_settled(sh, entry, ctx, e, None, settle);
    }
    let now = Utc::now();
    let countdown = match (r.eta, r.countdown) {
        (Some(eta), _) => (eta - now).to_std().unwrap_or(Duration::ZERO),
        (None, Some(c)) => c,
        (None, None) => Duration::from_secs_f64(entry.options.default_retry_delay.unwrap_or(DEFAULT_RETRY_DELAY)),
    };
    let reason = r.describe(countdown);
    let msg = republished(ctx, retries, now + countdown);
    // Celery republishes with the delivery's own exchange and routing key; a virtual transport
    // then puts it back in the queue it came from.
    let info = ctx.delivery_info();
    let route = Route {
        exchange: info.exchange.clone(),
        routing_key: info.routing_key.clone(),
        queue: ctx.queue().to_owned(),
        priority: None,
    };
    if let Err(e) = sh.shared.client.broker().publish(&route, msg) {
        // Celery turns a failed retry publish into `Reject(exc, requeue=False)`.
        let e = TaskError::with_module("celery.exceptions", "Reject", format!("cannot republish for retry: {e}"));
        return fail_settled(sh, entry, ctx, e, None, settle);
    }
    tracing::info!("Task {}[{}] retry: {reason}", h.task, h.id);
    sh.shared.hooks.send(&Signal::TaskRetry { ctx, reason: &reason });
    super::events::retried(&sh.shared, &h.id, &reason, traceback.as_deref());
    let exc = r.exc.unwrap_or_else(|| ExceptionInfo::new("celery.exceptions", "Retry", reason.clone()));
    store_with(sh, entry, Of::Ran(ctx), None, State::Retry, exc.to_value(), traceback, settle.map(After::ack));
}

/// The message of the next attempt: the same id, args and options; `retries + 1`, the new ETA,
/// and the task itself as parent when it had none (the send happens inside the running task).
fn republished(ctx: &TaskCtx, retries: u32, eta: chrono::DateTime<Utc>) -> TaskMessage {
    let mut msg = ctx.message().clone();
    let h = &mut msg.headers;
    h.retries = retries;
    h.eta = Some(format_datetime(&eta.fixed_offset()));
    if h.parent_id.is_none() {
        h.parent_id = Some(h.id.clone());
    }
    h.extra.remove("redelivered");
    // A v2 JSON body is sent again byte for byte; anything else (compressed, another
    // serializer, a protocol v1 body) is rewritten as the v2 JSON body it decoded to.
    let json = ctx.body().as_bytes();
    let plain_v2 = h.compression.is_none()
        && msg.content_type == ContentType::Json.mime()
        && json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !plain_v2 {
        if let Ok(body) = ctx.body().parse() {
            if let Ok(bytes) = encode_json_body(&body.args_value(), &body.kwargs_value(), &body.embed) {
                msg.headers.compression = None;
                msg.content_type = ContentType::Json.mime().to_owned();
                msg.content_encoding = ContentType::Json.encoding().to_owned();
                msg.body = Bytes::from(bytes);
            }
        }
    }
    msg
}
