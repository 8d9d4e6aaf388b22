//! `apply_async` options.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::protocol::Signature;
use serde_json::{Map, Value};

/// Options of one send (Celery's `apply_async` keywords). Unset fields take the configured
/// defaults.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Run no earlier than now + countdown.
    pub countdown: Option<Duration>,
    /// Run no earlier than this time (wins over `countdown`).
    pub eta: Option<DateTime<Utc>>,
    /// Expire after this long from now.
    pub expires_in: Option<Duration>,
    /// Expire at this time (wins over `expires_in`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Target queue (overrides `task_routes`).
    pub queue: Option<String>,
    /// Routing key; with the default exchange it names the queue.
    pub routing_key: Option<String>,
    /// Exchange to publish to (`apply_async(exchange=…)`); default: the route's, else `""`.
    pub exchange: Option<String>,
    /// 0–9; on memory and Redis lower numbers are served first.
    pub priority: Option<u8>,
    /// Custom headers, merged at the top level as Celery does.
    pub headers: Map<String, Value>,
    /// A chosen task id (default: a new uuid4).
    pub task_id: Option<String>,
    /// Store no result for this call.
    pub ignore_result: Option<bool>,
    /// Hard time limit in seconds (`timelimit[0]`).
    pub time_limit: Option<f64>,
    /// Soft time limit in seconds (`timelimit[1]`).
    pub soft_time_limit: Option<f64>,
    /// The task that sends this one (set for subtasks).
    pub parent_id: Option<String>,
    /// The first task of the workflow.
    pub root_id: Option<String>,
    /// Name shown in logs instead of the task name.
    pub shadow: Option<String>,
    /// Callbacks, errbacks and the rest of a chain carried in the message (`link`,
    /// `link_error`, `chain`): what the worker sends on when the task ends.
    pub embed: crate::protocol::Embed,
    /// The group the task belongs to (`group` header) and its place in it (`group_index`).
    pub group: Option<(String, i64)>,
    /// The queue rpc:// results go to (default: this client's own).
    pub reply_to: Option<String>,
}

impl SendOptions {
    /// No options: the task's and the app's defaults apply.
    pub fn new() -> Self {
        Self::default()
    }
    /// Run no sooner than `d` from now (`countdown`).
    pub fn countdown(mut self, d: Duration) -> Self {
        self.countdown = Some(d);
        self
    }
    /// Run no sooner than `t` (`eta`).
    pub fn eta(mut self, t: DateTime<Utc>) -> Self {
        self.eta = Some(t);
        self
    }
    /// Discard the task if it has not started `d` from now (`expires` as seconds).
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }
    /// Discard the task if it has not started by `t` (`expires` as a date).
    pub fn expires_at(mut self, t: DateTime<Utc>) -> Self {
        self.expires_at = Some(t);
        self
    }
    /// Send to queue `q` instead of the routed one (`queue`).
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Publish to exchange `e` (`exchange`); the routing key defaults to the queue.
    pub fn exchange(mut self, e: impl Into<String>) -> Self {
        self.exchange = Some(e.into());
        self
    }

    /// Publish with routing key `rk` (`routing_key`).
    pub fn routing_key(mut self, rk: impl Into<String>) -> Self {
        self.routing_key = Some(rk.into());
        self
    }
    /// Message priority 0–255 (`priority`; Redis uses 0–9 buckets, lower first as kombu does).
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = Some(p);
        self
    }
    /// An extra message header (`headers`), read by the task as `ctx.header(k)`.
    pub fn header(mut self, k: impl Into<String>, v: impl Into<Value>) -> Self {
        self.headers.insert(k.into(), v.into());
        self
    }
    /// Use `id` as the task id instead of a new UUID (`task_id`).
    pub fn task_id(mut self, id: impl Into<String>) -> Self {
        self.task_id = Some(id.into());
        self
    }
    /// Store no result for this call (`ignore_result`).
    pub fn ignore_result(mut self, yes: bool) -> Self {
        self.ignore_result = Some(yes);
        self
    }
    /// Hard time limit in seconds for this call (`time_limit`).
    pub fn time_limit(mut self, secs: f64) -> Self {
        self.time_limit = Some(secs);
        self
    }
    /// Soft time limit in seconds for this call (`soft_time_limit`).
    pub fn soft_time_limit(mut self, secs: f64) -> Self {
        self.soft_time_limit = Some(secs);
        self
    }
    /// Marks the send as a subtask of `parent_id` in the workflow rooted at `root_id`.
    pub fn parent(mut self, parent_id: impl Into<String>, root_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
        self.root_id = Some(root_id.into());
        self
    }

    /// Sends `callback` with this task's result when it succeeds (`link`).
    pub fn link(mut self, callback: Signature) -> Self {
        self.embed.callbacks.get_or_insert_with(Vec::new).push(callback);
        self
    }

    /// Sends `errback` with this task's id when it fails (`link_error`).
    pub fn link_error(mut self, errback: Signature) -> Self {
        self.embed.errbacks.get_or_insert_with(Vec::new).push(errback);
        self
    }

    /// Show the task under another name in logs and monitors (`shadow`).
    pub fn shadow(mut self, name: impl Into<String>) -> Self {
        self.shadow = Some(name.into());
        self
    }
}
