//! `AsyncResult`: a task's state and value, read from the result backend.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::backend::{Backend, ResultWatch};
use crate::protocol::{ExceptionInfo, ResultMeta, State};
use crate::{Error, Result, TaskFailure};

/// A handle on one task's result. Clones share one subscription to it.
///
/// ```
/// use std::time::Duration;
/// use celeriac::{Error, State, TaskError};
///
/// fn fail(message: String) -> Result<(), TaskError> {
///     Err(TaskError::value_error(message))
/// }
///
/// # fn main() -> celeriac::Result<()> {
/// let app = celeriac::App::builder("proj").result_backend("memory://").task("proj.fail", ["message"], fail).build()?;
/// let worker = app.worker().start()?;
/// let r = app.send_task("proj.fail", ("boom",))?;
/// // get() re-raises the task's exception, as Celery's does.
/// match r.get::<()>(Duration::from_secs(5)) {
///     Err(Error::TaskFailed(f)) => assert_eq!((f.state, f.exception.exc_type.as_str()), (State::Failure, "ValueError")),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(r.state()?, State::Failure);
/// worker.shutdown();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AsyncResult {
    id: String,
    /// Where the result is read (all a result handle needs of the client that sent it).
    backend: Backend,
    /// Opened at send time (Redis results) or by the first wait.
    watch: Arc<OnceLock<ResultWatch>>,
}

impl AsyncResult {
    pub(crate) fn new(id: String, backend: Backend, watch: Option<ResultWatch>) -> Self {
        let cell = OnceLock::new();
        if let Some(w) = watch {
            let _ = cell.set(w);
        }
        AsyncResult { id, backend, watch: Arc::new(cell) }
    }

    fn watch(&self) -> Result<&ResultWatch> {
        if let Some(w) = self.watch.get() {
            return Ok(w);
        }
        let w = self.backend.watch(&self.id)?;
        // A clone racing us may have set one first; ours is then dropped (and pruned).
        Ok(self.watch.get_or_init(|| w))
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn meta(&self) -> Result<Option<ResultMeta>> {
        Ok(self.backend.get(&self.id)?)
    }

    /// The current state; PENDING when nothing is stored.
    pub fn state(&self) -> Result<State> {
        Ok(self.meta()?.map_or(State::Pending, |m| m.status))
    }

    /// Whether the task finished (SUCCESS, FAILURE or REVOKED).
    pub fn ready(&self) -> Result<bool> {
        Ok(self.state()?.is_ready())
    }

    /// Whether the task ended in SUCCESS (`AsyncResult.successful()`).
    pub fn successful(&self) -> Result<bool> {
        Ok(self.state()? == State::Success)
    }

    /// Whether the task ended in FAILURE (`AsyncResult.failed()`).
    pub fn failed(&self) -> Result<bool> {
        Ok(self.state()? == State::Failure)
    }

    /// The stored result value (the return value, an exception dict, or custom state meta).
    pub fn info(&self) -> Result<Option<Value>> {
        Ok(self.meta()?.map(|m| m.result))
    }

    /// The traceback text of a failed task.
    pub fn traceback(&self) -> Result<Option<String>> {
        Ok(self.meta()?.and_then(|m| m.traceback))
    }

    /// Deletes the stored result.
    pub fn forget(&self) -> Result<()> {
        Ok(self.backend.forget(&self.id)?)
    }

    /// Blocks until the task is ready and returns its value as `T`; a failed task is
    /// [`Error::TaskFailed`], a timeout [`Error::Timeout`].
    pub fn get<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let meta = self.watch()?.wait_blocking(timeout);
        self.finish(meta, timeout, true)
    }

    /// As [`get`](Self::get) with `propagate=False`: a failure's exception dict is returned as the
    /// value instead of an error.
    pub fn get_value(&self, timeout: Duration, propagate: bool) -> Result<Value> {
        let meta = self.watch()?.wait_blocking(timeout);
        self.finish(meta, timeout, propagate)
    }

    /// Awaits the value from any executor (tokio, glommio, `block_on`).
    pub async fn get_async<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let meta = self.watch()?.wait(timeout).await;
        self.finish(meta, timeout, true)
    }

    fn finish<T: DeserializeOwned>(&self, meta: Option<ResultMeta>, waited: Duration, propagate: bool) -> Result<T> {
        let meta = meta.ok_or_else(|| Error::Timeout { task_id: self.id.clone(), waited })?;
        if propagate && meta.status.propagates() {
            let exception = meta.exception().unwrap_or_else(|| {
                ExceptionInfo::new(
                    "celery.exceptions",
                    "TaskError",
                    format!("{} with result {}", meta.status, meta.result),
                )
            });
            return Err(Error::TaskFailed(Box::new(TaskFailure {
                task_id: self.id.clone(),
                state: meta.status,
                exception,
                traceback: meta.traceback,
            })));
        }
        serde_json::from_value(meta.result)
            .map_err(|e| Error::ResultType { task_id: self.id.clone(), reason: e.to_string() })
    }
}
