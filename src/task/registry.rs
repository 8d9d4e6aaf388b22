//! The task registry: names to handlers, frozen at start and shared by every shard.

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::{DecodedBody, ExceptionInfo};

use super::handler::Handler;
use super::{Call, Invocation, TaskError};

/// Per-task options set at registration; `None` means the worker's setting (or Celery's task
/// default). Names are Celery's task attributes.
///
/// ```
/// # use celeriac::TaskOptions;
/// let opts = TaskOptions {
///     autoretry_for: vec!["ConnectionError".into()],
///     retry_backoff: Some(1.0),
///     max_retries: Some(Some(5)),
///     rate_limit: Some("100/s".into()),
///     ..TaskOptions::default()
/// };
/// ```
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Store no result (`ignore_result=True`).
    pub ignore_result: Option<bool>,
    /// Ack after the result is stored (`acks_late=True`).
    pub acks_late: Option<bool>,
    /// Retries allowed before the task fails (default 3); `Some(None)` retries forever.
    pub max_retries: Option<Option<u32>>,
    /// Seconds before a retry that names no countdown or ETA (default 180).
    pub default_retry_delay: Option<f64>,
    /// Exception type names (`exc_type`, e.g. `"ValueError"`, or a Rust error's type name)
    /// that retry the task automatically; `"Exception"` matches every error.
    pub autoretry_for: Vec<String>,
    /// Exception type names never retried automatically, even if `autoretry_for` matches.
    pub dont_autoretry_for: Vec<String>,
    /// Exponential backoff factor for automatic retries: countdown `factor * 2^retries` seconds
    /// (`retry_backoff=True` is 1). `None`/0: `default_retry_delay`.
    pub retry_backoff: Option<f64>,
    /// Upper bound of the backoff countdown in seconds (default 600).
    pub retry_backoff_max: Option<u64>,
    /// Full jitter on the backoff countdown (default true).
    pub retry_jitter: Option<bool>,
    /// Hard time limit in seconds (overrides `task_time_limit`).
    pub time_limit: Option<f64>,
    /// Soft time limit in seconds (overrides `task_soft_time_limit`).
    pub soft_time_limit: Option<f64>,
    /// The body watches its soft limit itself ([`TaskCtx::soft_time_limit_exceeded`],
    /// [`TaskCtx::soft_time_limit`]) and keeps running past it until it returns or the hard
    /// limit hits. Without it (the default), a body still running when the soft limit passes
    /// fails with `SoftTimeLimitExceeded`, as Celery raises it inside the task; calling either
    /// `TaskCtx` method before the limit declares the same for one run.
    ///
    /// [`TaskCtx::soft_time_limit_exceeded`]: super::TaskCtx::soft_time_limit_exceeded
    /// [`TaskCtx::soft_time_limit`]: super::TaskCtx::soft_time_limit
    pub watches_soft_time_limit: bool,
    /// `"10/s"`, `"100/m"`, `"1000/h"` or a number per second, per worker.
    pub rate_limit: Option<String>,
    /// Store STARTED when the task starts (overrides `task_track_started`).
    pub track_started: Option<bool>,
    /// With acks_late, requeue the message when the worker loses the task.
    pub reject_on_worker_lost: Option<bool>,
    /// With acks_late, ack failed and timed-out tasks (default true).
    pub acks_on_failure_or_timeout: Option<bool>,
}

impl TaskOptions {
    /// Checks the options of task `name`: a malformed rate limit or a non-positive time limit is
    /// an error naming both.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if let Some(r) = &self.rate_limit {
            crate::config::RateLimit::parse(r).map_err(|e| format!("task {name:?}: {e}"))?;
        }
        for (what, v) in [("time_limit", self.time_limit), ("soft_time_limit", self.soft_time_limit)] {
            if v.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
                return Err(format!("task {name:?}: {what} must be a positive number of seconds"));
            }
        }
        Ok(())
    }

    /// Whether an error of type `exc_type` retries the task automatically.
    pub(crate) fn autoretries(&self, exc_type: &str) -> bool {
        let hit = |names: &[String]| names.iter().any(|n| n == exc_type || n == "Exception" || n == "BaseException");
        hit(&self.autoretry_for) && !self.dont_autoretry_for.iter().any(|n| n == exc_type)
    }
}

type ErasedCall = Box<dyn Fn(&Invocation<'_>) -> Result<Call, TaskError> + Send + Sync>;

/// One registered task.
pub struct TaskEntry {
    /// The registered name.
    pub name: String,
    /// Positional parameter names, for keyword arguments.
    pub params: Vec<String>,
    /// The task's options.
    pub options: TaskOptions,
    /// Takes any arguments (`*args, **kwargs`): Python's call checks are left to the body.
    variadic: bool,
    call: ErasedCall,
}

impl TaskEntry {
    /// Erases a handler; checks that the names match its positional parameters.
    pub fn new<M, H: Handler<M>>(name: &str, params: Vec<String>, handler: H) -> Result<Self, String> {
        let n = handler.positional_count();
        if params.len() != n {
            return Err(format!(
                "task {name:?}: {} parameter name(s) given ({:?}) but the function takes {n} positional argument(s)",
                params.len(),
                params
            ));
        }
        Ok(TaskEntry {
            name: name.to_owned(),
            params,
            options: TaskOptions::default(),
            variadic: false,
            call: Box::new(move |inv| handler.call(inv)),
        })
    }

    /// A built-in task over the raw invocation (see `builtins.rs`).
    pub(crate) fn builtin(
        name: &str,
        params: &[&str],
        variadic: bool,
        call: fn(&Invocation<'_>) -> Result<Call, TaskError>,
    ) -> Self {
        TaskEntry {
            name: name.to_owned(),
            params: params.iter().map(|p| (*p).to_owned()).collect(),
            options: TaskOptions::default(),
            variadic,
            call: Box::new(call),
        }
    }

    /// Checks the call like Python does, then starts the body.
    pub(crate) fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
        if !self.variadic {
            inv.check_call()?;
        }
        (self.call)(inv)
    }
}

impl std::fmt::Debug for TaskEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEntry").field("name", &self.name).field("params", &self.params).finish()
    }
}

/// All registered tasks, by name (looked up once per message: foldhash, not SipHash).
#[derive(Debug, Default)]
pub struct Registry {
    tasks: HashMap<String, Arc<TaskEntry>, foldhash::fast::RandomState>,
}

impl super::extract::InProcess for Registry {
    fn call_here(&self, inv: &Invocation<'_>, name: &str, args: &[serde_json::Value]) -> Result<Call, TaskError> {
        let entry = self.get(name).ok_or_else(|| TaskError::from_exception(ExceptionInfo::not_registered(name)))?;
        let body = DecodedBody::of_args(args, &serde_json::Map::new());
        let parsed = body.parse().map_err(|e| TaskError::type_error(e.to_string()))?;
        entry.call(&Invocation { body: &parsed, names: &entry.params, ..*inv })
    }
}

impl Registry {
    /// Adds a task; a duplicate name is an error.
    pub fn insert(&mut self, entry: TaskEntry) -> Result<(), String> {
        if self.tasks.contains_key(&entry.name) {
            return Err(format!("task {:?} is registered twice", entry.name));
        }
        self.tasks.insert(entry.name.clone(), Arc::new(entry));
        Ok(())
    }

    /// The task registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<TaskEntry>> {
        self.tasks.get(name)
    }

    /// Task names, sorted (for the banner and `registered`).
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// How many tasks are registered.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
