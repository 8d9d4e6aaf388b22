//! Celery's signal points as Rust hooks: register `App::builder(..).on_signal(|s| …)` and match
//! the [`Signal`] you care about. Hooks run on the shard (or thread) where the event happens, in
//! registration order; keep them short — they sit on the task path.

use std::sync::Arc;

use serde_json::Value;

use crate::protocol::{ExceptionInfo, Headers, State};
use crate::task::TaskCtx;

/// One signal, borrowed for the duration of the hook call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Signal<'a> {
    /// `task_prerun`: the body is about to run.
    TaskPrerun {
        /// The running task's context: id, name, headers, delivery.
        ctx: &'a TaskCtx,
    },
    /// `task_postrun`: the body returned (any outcome); `state` is what was (or would be) stored.
    TaskPostrun {
        /// The running task's context: id, name, headers, delivery.
        ctx: &'a TaskCtx,
        /// The state stored (or that would be).
        state: &'a State,
        /// The return value, or the exception as stored.
        retval: &'a Value,
    },
    /// `task_success`.
    TaskSuccess {
        /// The running task's context: id, name, headers, delivery.
        ctx: &'a TaskCtx,
        /// The return value.
        result: &'a Value,
    },
    /// `task_failure` (hard time limits included).
    TaskFailure {
        /// The running task's context: id, name, headers, delivery.
        ctx: &'a TaskCtx,
        /// The exception as stored.
        exception: &'a ExceptionInfo,
        /// Its traceback, if any.
        traceback: Option<&'a str>,
    },
    /// `task_retry`: the task was republished; `reason` is Celery's `str(Retry)`.
    TaskRetry {
        /// The running task's context: id, name, headers, delivery.
        ctx: &'a TaskCtx,
        /// Celery's `str(Retry)`.
        reason: &'a str,
    },
    /// `task_revoked`: revoked before it ran, expired, or terminated while running.
    TaskRevoked {
        /// The message's headers.
        headers: &'a Headers,
        /// Whether it was stopped while running.
        terminated: bool,
        /// The signal named by `revoke(terminate=True, signal=…)`.
        signum: Option<&'a str>,
        /// Whether it was revoked because it expired.
        expired: bool,
    },
    /// `task_received`: a message for a registered task arrived and decoded (before any ETA or
    /// rate-limit wait).
    TaskReceived {
        /// The message's headers.
        headers: &'a Headers,
    },
    /// `task_rejected`: a message that cannot be run (malformed headers or body, content not
    /// accepted); `reason` says why. Its FAILURE is stored when its id is known.
    TaskRejected {
        /// The message's headers.
        headers: &'a Headers,
        /// Why it cannot be run.
        reason: &'a str,
    },
    /// `task_unknown`: a message for a task name this worker does not know.
    TaskUnknown {
        /// The task name asked for.
        name: &'a str,
        /// The task id.
        id: &'a str,
    },
    /// celeriac's after-store point (Celery has no signal for it): the outcome of task `id` is
    /// recorded — the result store took its write, or nothing was to be stored (`ignore_result`,
    /// no backend). Links, chains and chords continue from here; `ctx` is the run's context when
    /// the task ran (its message's body holds the embed: callbacks, errbacks, chain, chord). Not
    /// sent when the write failed: that message is delivered again and recorded then.
    TaskRecorded {
        /// The task id.
        id: &'a str,
        /// The task name.
        task: &'a str,
        /// The state recorded.
        state: &'a State,
        /// The result (or exception) recorded.
        result: &'a Value,
        /// The run's context, when the task ran.
        ctx: Option<&'a TaskCtx>,
    },
    /// `worker_ready`: every shard is consuming.
    WorkerReady {
        /// The worker's node name.
        hostname: &'a str,
    },
    /// `worker_shutdown`: every shard stopped.
    WorkerShutdown {
        /// The worker's node name.
        hostname: &'a str,
    },
}

/// A registered hook.
pub type Hook = Arc<dyn Fn(&Signal<'_>) + Send + Sync>;

/// The hooks of one app.
#[derive(Clone, Default)]
pub(crate) struct Hooks(pub Vec<Hook>);

impl Hooks {
    /// Whether no hook is registered (what a signal would copy is then not copied).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Calls every hook; a panicking hook is logged and does not stop the task or the others.
    pub(crate) fn send(&self, s: &Signal<'_>) {
        for h in &self.0 {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(s))).is_err() {
                tracing::error!("a signal hook panicked on {s:?}");
            }
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooks({})", self.0.len())
    }
}
