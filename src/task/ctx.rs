//! The request context a task can ask for (Celery's `self.request`), plus what a running task
//! may do to its own request: report progress (`update_state`) and notice its soft time limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::backend::Backend;
use crate::protocol::{DecodedBody, DeliveryInfo, Headers, ResultMeta, State, TaskMessage};

/// What a running task knows about its own request. Cheap to clone and `Send`, so blocking
/// bodies on the blocking pool can take it too. A task gets it by naming it among its
/// parameters (it takes no name in the parameter list):
///
/// ```
/// use std::time::Duration;
/// use celeriac::{Retry, TaskCtx, TaskError};
///
/// // Celery's `self.request` and `self.retry`: fails twice, then succeeds.
/// fn flaky(ctx: TaskCtx, label: String) -> Result<String, TaskError> {
///     if ctx.retries() < 2 {
///         return Err(Retry::new().countdown(0.01).into());
///     }
///     Ok(format!("{label}: {} after {} retries", ctx.name(), ctx.retries()))
/// }
///
/// # fn main() -> celeriac::Result<()> {
/// let app = celeriac::App::builder("proj").result_backend("memory://").task("proj.flaky", ["label"], flaky).build()?;
/// let worker = app.worker().start()?;
/// let r = app.send_task("proj.flaky", ("x",))?;
/// assert_eq!(r.get::<String>(Duration::from_secs(5))?, "x: proj.flaky after 2 retries");
/// worker.shutdown();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TaskCtx(pub(crate) Arc<CtxInner>);

#[derive(Debug)]
pub(crate) struct CtxInner {
    /// The message as delivered (headers, properties, body bytes): retries republish it and a
    /// requeue puts it back.
    pub message: Box<TaskMessage>,
    /// The body after decompression and transcoding to JSON.
    pub body: DecodedBody,
    pub delivery_info: DeliveryInfo,
    /// The queue the message was consumed from, kept only when the routing key does not name it
    /// (a non-default exchange): most messages come through the default exchange, and a shared
    /// `Arc` cloned per task costs two contended atomic operations.
    pub queue: Option<Arc<str>>,
    pub hostname: Arc<str>,
    pub shard: usize,
    /// When the soft time limit passes, if there is one.
    pub soft_deadline: Option<Instant>,
    /// The body asked about its soft limit: it handles the limit itself, so the worker does not
    /// stop it there.
    pub watches_soft_limit: AtomicBool,
    /// The message's callbacks, errbacks and chain, when it has any (set once it is parsed).
    pub embed: std::sync::OnceLock<crate::protocol::Embed>,
    /// Where `update_state` writes.
    pub backend: Backend,
}

impl TaskCtx {
    pub(crate) fn new(inner: CtxInner) -> Self {
        TaskCtx(Arc::new(inner))
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.0.message.headers.id
    }
    /// The registered task name.
    pub fn name(&self) -> &str {
        &self.0.message.headers.task
    }
    /// How many times this task has been retried.
    pub fn retries(&self) -> u32 {
        self.0.message.headers.retries
    }
    /// The first task of the workflow.
    pub fn root_id(&self) -> Option<&str> {
        self.0.message.headers.root_id.as_deref()
    }
    /// The task that sent this one.
    pub fn parent_id(&self) -> Option<&str> {
        self.0.message.headers.parent_id.as_deref()
    }
    /// The group this task is a member of.
    pub fn group_id(&self) -> Option<&str> {
        self.0.message.headers.group.as_deref()
    }
    /// Position inside the group.
    pub fn group_index(&self) -> Option<i64> {
        self.0.message.headers.group_index
    }
    /// ETA as sent (ISO-8601).
    pub fn eta(&self) -> Option<&str> {
        self.0.message.headers.eta.as_deref()
    }
    /// Expiry as sent (ISO-8601).
    pub fn expires(&self) -> Option<&str> {
        self.0.message.headers.expires.as_deref()
    }
    /// Exchange, routing key and redelivered flag of the delivery.
    pub fn delivery_info(&self) -> &DeliveryInfo {
        &self.0.delivery_info
    }
    /// The queue the message was consumed from.
    pub fn queue(&self) -> &str {
        self.0.queue.as_deref().unwrap_or(&self.0.delivery_info.routing_key)
    }
    /// The worker's node name (`celery@host`).
    pub fn hostname(&self) -> &str {
        &self.0.hostname
    }
    /// The shard running the task.
    pub fn shard(&self) -> usize {
        self.0.shard
    }
    /// All headers, custom ones included.
    pub fn headers(&self) -> &Headers {
        &self.0.message.headers
    }

    /// The message as delivered.
    pub fn message(&self) -> &TaskMessage {
        &self.0.message
    }

    pub(crate) fn body(&self) -> &DecodedBody {
        &self.0.body
    }

    /// Whether the soft time limit has passed. Celery raises `SoftTimeLimitExceeded` inside the
    /// task; a Rust task that calls this (or [`TaskCtx::soft_time_limit`]) before the limit says
    /// it handles the limit itself: the worker lets it run on (up to the hard limit), and it
    /// returns [`TaskError::soft_time_limit_exceeded`](super::TaskError::soft_time_limit_exceeded)
    /// or whatever partial result it wants to keep. A task that never asks is stopped when the
    /// limit passes, with that failure stored (see [`TaskOptions::watches_soft_time_limit`]).
    ///
    /// [`TaskOptions::watches_soft_time_limit`]: super::TaskOptions::watches_soft_time_limit
    pub fn soft_time_limit_exceeded(&self) -> bool {
        self.0.watches_soft_limit.store(true, Ordering::Relaxed);
        self.0.soft_deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether the body declared that it watches its soft limit (by asking about it).
    pub(crate) fn watches_soft_limit(&self) -> bool {
        self.0.watches_soft_limit.load(Ordering::Relaxed)
    }

    /// Completes when the soft time limit passes (never, without one). From any executor:
    /// `futures::select!`/`or` it against the work to stop cleanly. Calling it declares, as
    /// [`TaskCtx::soft_time_limit_exceeded`] does, that the task handles the limit itself.
    pub async fn soft_time_limit(&self) {
        self.0.watches_soft_limit.store(true, Ordering::Relaxed);
        match self.0.soft_deadline {
            Some(d) => crate::rt::sleep_anywhere(d.saturating_duration_since(Instant::now())).await,
            None => std::future::pending().await,
        }
    }

    /// Stores a state and meta for this task now (`self.update_state(state="PROGRESS",
    /// meta={...})`): Python's `AsyncResult.state`/`.info` see it until the task finishes. Does
    /// not wait; the final result is written after it on the same connection when called on a
    /// shard. Stored even with `ignore_result`, as in Celery.
    pub fn update_state(&self, state: &str, meta: Value) {
        let mut m = ResultMeta::new(self.id(), State::parse(state), meta);
        m.parent_id = self.0.message.headers.parent_id.clone();
        m.group_id = self.0.message.headers.group.clone();
        m.destination = self.destination();
        self.0.backend.store_detached(m);
    }

    /// Where an rpc:// backend sends this task's states: the message's `reply_to` and its
    /// `correlation_id` (the task id when it has none).
    pub(crate) fn destination(&self) -> Option<(String, String)> {
        self.0.message.reply_destination()
    }
}
