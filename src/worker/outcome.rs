//! Recording an outcome: the result meta stored (unless ignored), then the delivery settled once
//! the write is done; a refused write is counted and leaves the message for redelivery. Also the
//! outcomes of messages that never run: malformed, unregistered, revoked or expired.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::FutureExt;
use serde_json::Value;

use crate::backend::{BackendError, Stored};
use crate::protocol::{
    shorten, DecodedBody, ExceptionInfo, Headers, ProtocolError, ResultMeta, State, TaskMessage, EXC_MESSAGE_MAX,
    REPR_MAX, TRACEBACK_MAX,
};
use crate::rt;
use crate::task::{TaskCtx, TaskEntry, TaskError};
use crate::transport::Settle;

use super::chord::PartReturn;
use super::settlement::{After, Settled};
use super::shard_ctx::ShardCtx;
use super::signal::Signal;

/// What `result_extended` adds to a stored result, captured before the body runs.
pub(crate) struct Extended {
    pub(crate) args: Value,
    pub(crate) kwargs: Value,
    pub(crate) queue: String,
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
    super::events::failed(shared, &h.id, &bounded.repr(), &tb);
    let exc = bounded.to_value();
    shared.hooks.send(&Signal::TaskPostrun { ctx, state: &State::Failure, retval: &exc });
    shared.hooks.send(&Signal::TaskFailure { ctx, exception: e.exception(), traceback: Some(&tb) });
    store_with(sh, entry, Of::Ran(ctx), extended, State::Failure, exc, Some(tb), after)
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

pub(crate) fn ignores_result(sh: &ShardCtx, entry: &TaskEntry, h: &Headers) -> bool {
    h.ignores_result() || entry.options.ignore_result.unwrap_or(sh.shared.ignore_result)
}

/// A revoked or expired task: acked and dropped, REVOKED stored (Celery's
/// `TaskRevokedError("revoked" | "expired")`).
pub(crate) fn discard_revoked(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    msg: &TaskMessage,
    body: &DecodedBody,
    settle: Settle,
    why: &str,
) {
    let h = &msg.headers;
    tracing::info!("Discarding revoked task: {}[{}] ({why})", h.task, h.id);
    let expired = why == "expired";
    sh.shared.hooks.send(&Signal::TaskRevoked { headers: h, terminated: false, signum: None, expired });
    super::events::revoked(&sh.shared, &h.id, false, None, expired);
    let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", why);
    // A revoked chord part still counts (as REVOKED, failing the chord), as Celery's
    // `mark_as_revoked` calls `on_chord_part_return`: the chord must not wait for it for ever.
    let embed = body.parse().ok().map(|b| b.embed).filter(|e| e.chord.is_some());
    let of = Of::Message(msg, embed.as_ref());
    store_with(sh, entry, of, None, State::Revoked, exc.to_value(), None, Some(After::ack(settle)));
}

/// Stores the result unless it is ignored, then settles the delivery (if still unacked) once
/// the write is done: with acks_late a message is acked only after its result is stored.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_with(
    sh: &Rc<ShardCtx>,
    entry: &TaskEntry,
    of: Of<'_>,
    extended: Option<Extended>,
    state: State,
    result: Value,
    traceback: Option<String>,
    after: Option<After>,
) {
    if ignores_result(sh, entry, of.headers()) {
        // Callbacks, chains and chords go on without a stored result.
        let part = match of {
            Of::Ran(ctx) => {
                super::canvas::dispatch(sh, ctx, &state, &result);
                PartReturn::of(ctx.headers(), ctx.0.embed.get(), &state, &result)
            }
            Of::Message(m, embed) => PartReturn::of(&m.headers, embed, &state, &result),
        };
        let recorded = Recorded::keep(sh, of, &state, &result);
        return finish(sh, of.headers(), Stored::Done(Ok(())), part, after, recorded);
    }
    store_meta(sh, of, extended, state, result, traceback, after);
}

/// Whose outcome is recorded: a task that ran (its context has the whole message, embed
/// included) or a message that never ran (malformed, unknown, revoked, expired).
#[derive(Clone, Copy)]
pub(crate) enum Of<'a> {
    Ran(&'a TaskCtx),
    /// With the message's embed when a chord part's outcome must still be counted.
    Message(&'a TaskMessage, Option<&'a crate::protocol::Embed>),
}

impl Of<'_> {
    fn headers(&self) -> &Headers {
        match self {
            Of::Ran(ctx) => ctx.headers(),
            Of::Message(m, _) => &m.headers,
        }
    }
}

/// What [`Signal::TaskRecorded`] reports, kept (cloned) only while some hook listens.
struct Recorded {
    task: String,
    id: String,
    state: State,
    result: Value,
    ctx: Option<TaskCtx>,
}

impl Recorded {
    fn keep(sh: &ShardCtx, of: Of<'_>, state: &State, result: &Value) -> Option<Recorded> {
        if sh.shared.hooks.is_empty() {
            return None;
        }
        let h = of.headers();
        let ctx = match of {
            Of::Ran(ctx) => Some(ctx.clone()),
            Of::Message(..) => None,
        };
        Some(Recorded { task: h.task.clone(), id: h.id.clone(), state: state.clone(), result: result.clone(), ctx })
    }

    fn send(&self, sh: &ShardCtx) {
        sh.shared.hooks.send(&Signal::TaskRecorded {
            id: &self.id,
            task: &self.task,
            state: &self.state,
            result: &self.result,
            ctx: self.ctx.as_ref(),
        });
    }
}

fn store_meta(
    sh: &Rc<ShardCtx>,
    of: Of<'_>,
    extended: Option<Extended>,
    state: State,
    result: Value,
    traceback: Option<String>,
    after: Option<After>,
) {
    let shared = &sh.shared;
    let h = of.headers();
    let (destination, children, part) = match of {
        Of::Ran(ctx) => (
            ctx.destination(),
            super::canvas::dispatch(sh, ctx, &state, &result),
            PartReturn::of(ctx.headers(), ctx.0.embed.get(), &state, &result),
        ),
        Of::Message(m, embed) => {
            (m.reply_destination(), Vec::new(), PartReturn::of(&m.headers, embed, &state, &result))
        }
    };
    let recorded = Recorded::keep(sh, of, &state, &result);
    let mut meta = ResultMeta::new(&h.id, state, result);
    meta.destination = destination;
    if !children.is_empty() {
        meta.children = Some(children);
    }
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
    finish(sh, h, sh.store.store(meta), part, after, recorded);
}

/// Settles once the write (`write`) is done and the chord part, if any, counted; when either is
/// still to come, as a task of the shard that a shutdown waits for.
fn finish(
    sh: &Rc<ShardCtx>,
    h: &Headers,
    write: Stored,
    part: Option<PartReturn>,
    after: Option<After>,
    recorded: Option<Recorded>,
) {
    match (write, part) {
        (Stored::Done(r), None) => stored_as(sh, &h.task, &h.id, r, after, recorded),
        (write, part) => {
            let what = (h.task.clone(), h.id.clone());
            sh.storing.set(sh.storing.get() + 1);
            let sh = sh.clone();
            rt::spawn_local(async move {
                let mut r = match write {
                    Stored::Done(r) => r,
                    Stored::Pending(write) => write.or(store_deadline(&sh)).await,
                };
                // A chord part is counted after its result is stored, as Celery does, and
                // before the delivery is settled.
                if let (Ok(()), Some(part)) = (&r, part) {
                    r = part.run(&sh).await;
                }
                stored_as(&sh, &what.0, &what.1, r, after, recorded);
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

/// Settles a delivery once its outcome's write ended: acked (or as decided) when stored, and the
/// after-store signal sent; when the store refused it, counted, logged with the task, and left
/// unacked for the broker to deliver again (an early-acked message is gone already: only the
/// count and the log remain).
fn stored_as(
    sh: &ShardCtx,
    task: &str,
    id: &str,
    r: Result<(), BackendError>,
    after: Option<After>,
    recorded: Option<Recorded>,
) {
    match r {
        Ok(()) => {
            if let Some(a) = after {
                a.done();
            }
            if let Some(r) = recorded {
                r.send(sh);
            }
        }
        Err(e) => {
            sh.stats().store_failed.fetch_add(1, Ordering::Relaxed);
            match after {
                Some(a) => {
                    tracing::error!(
                        "Cannot record the outcome of {task}[{id}]: {e}. The message is left unacked for redelivery."
                    );
                    a.undone();
                }
                None => tracing::error!("Cannot record the outcome of {task}[{id}]: {e}. It is lost."),
            }
        }
    }
}

/// A message we cannot decode: logged with its name and id, rejected without requeue (it would
/// fail again), and, when its id is known, marked FAILURE so a waiting client fails fast.
pub(crate) fn reject_malformed(sh: &Rc<ShardCtx>, msg: &TaskMessage, settle: Settle, e: ProtocolError) {
    let (h, content_type) = (&msg.headers, msg.content_type.as_str());
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
    let reason = e.to_string();
    sh.shared.hooks.send(&Signal::TaskRejected { headers: h, reason: &reason });
    if !h.id.is_empty() {
        super::events::rejected(&sh.shared, &h.id, false);
    }
    if !h.id.is_empty() && !h.ignores_result() {
        let (module, ty) = match e {
            ProtocolError::ContentDisallowed { .. } => ("kombu.exceptions", "ContentDisallowed"),
            _ => ("kombu.exceptions", "DecodeError"),
        };
        let exc = ExceptionInfo::new(module, ty, reason).bounded(EXC_MESSAGE_MAX);
        store_meta(sh, Of::Message(msg, None), None, State::Failure, exc.to_value(), None, Some(After::ack(settle)));
        return;
    }
    settle.reject();
}

/// An unknown task name: reported the way Celery does (error log, FAILURE `NotRegistered`,
/// message rejected without requeue).
pub(crate) fn reject_unregistered(sh: &Rc<ShardCtx>, msg: &TaskMessage, settle: Settle) {
    let h = &msg.headers;
    tracing::error!(
        "Received unregistered task of type {:?} (id {}). The message has been ignored and discarded.",
        shorten(&h.task, REPR_MAX),
        shorten(&h.id, REPR_MAX)
    );
    sh.stats().rejected.fetch_add(1, Ordering::Relaxed);
    sh.shared.hooks.send(&Signal::TaskUnknown { name: &h.task, id: &h.id });
    let exc = ExceptionInfo::not_registered(&h.task);
    super::events::failed(&sh.shared, &h.id, &exc.repr(), "");
    if !h.ignores_result() {
        store_meta(sh, Of::Message(msg, None), None, State::Failure, exc.to_value(), None, Some(After::ack(settle)));
        return;
    }
    settle.reject();
}
