//! The error a task returns: an exception Python can re-raise by type name, with traceback text,
//! or one of Celery's control values ([`Retry`], [`Reject`], [`Ignore`]) that steer the worker
//! instead of failing the task.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::protocol::ExceptionInfo;

/// A task failure. Build one with [`TaskError::new`] (or a named constructor), or let `?` convert
/// any `std::error::Error` (type name = the Rust type's name, module `celeriac`).
///
/// Not itself a `std::error::Error`, so the blanket conversion stays coherent (as with anyhow).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    // Boxed: a task's `Result` stays one pointer wide on the success path.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    exc: ExceptionInfo,
    traceback: Option<String>,
    control: Option<Control>,
}

/// What the worker does instead of storing a FAILURE.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Control {
    Retry(Retry),
    Reject(Reject),
    Ignore,
}

impl TaskError {
    /// An exception `exc_type` from Python's `builtins` (`"ValueError"`, `"KeyError"` …).
    pub fn new(exc_type: &str, message: impl Into<String>) -> Self {
        Self::with_module("builtins", exc_type, message)
    }

    /// An exception of `module.exc_type`; Python imports it if it can, else synthesizes a class of
    /// that name.
    pub fn with_module(module: &str, exc_type: &str, message: impl Into<String>) -> Self {
        Self::from_exception(ExceptionInfo::new(module, exc_type, message))
    }

    /// An exception as stored (any `exc_message` arguments).
    pub fn from_exception(exc: ExceptionInfo) -> Self {
        TaskError { inner: Box::new(Inner { exc, traceback: None, control: None }) }
    }

    /// `ValueError(message)`.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::new("ValueError", message)
    }

    /// `TypeError(message)`: what a wrong argument becomes.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }

    /// `SoftTimeLimitExceeded()`, what a task returns when it stops because its soft time limit
    /// passed ([`TaskCtx::soft_time_limit_exceeded`](super::TaskCtx::soft_time_limit_exceeded)).
    pub fn soft_time_limit_exceeded() -> Self {
        Self::from_exception(ExceptionInfo {
            exc_type: "SoftTimeLimitExceeded".into(),
            exc_message: serde_json::json!([]),
            exc_module: "billiard.exceptions".into(),
        })
    }

    /// Attaches traceback text (shown by Python's `AsyncResult.traceback`).
    pub fn with_traceback(mut self, tb: impl Into<String>) -> Self {
        self.inner.traceback = Some(tb.into());
        self
    }

    /// The exception as stored.
    pub fn exception(&self) -> &ExceptionInfo {
        &self.inner.exc
    }

    /// The traceback text, if any.
    pub fn traceback(&self) -> Option<&str> {
        self.inner.traceback.as_deref()
    }

    pub(crate) fn control(&self) -> Option<&Control> {
        self.inner.control.as_ref()
    }

    fn control_value(exc: ExceptionInfo, control: Control) -> Self {
        TaskError { inner: Box::new(Inner { exc, traceback: None, control: Some(control) }) }
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.inner.exc.exc_type, self.inner.exc.message())
    }
}

impl<E: std::error::Error + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.split('<').next().unwrap_or(full).rsplit("::").next().unwrap_or(full);
        TaskError::with_module("celeriac", short, e.to_string())
    }
}

/// Asks the worker to run the task again later (Celery's `raise self.retry(...)`): the same task
/// id is republished with `retries + 1` and an ETA, RETRY is stored, and the message is acked.
/// Past `max_retries` the task fails with `exc` (or `MaxRetriesExceededError`).
///
/// ```
/// # use celeriac::{Retry, TaskCtx, TaskError};
/// fn flaky(ctx: TaskCtx, fail_times: u32) -> Result<u32, TaskError> {
///     if ctx.retries() < fail_times {
///         return Err(Retry::new().countdown(0.1).into());
///     }
///     Ok(ctx.retries())
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retry {
    pub(crate) countdown: Option<Duration>,
    pub(crate) eta: Option<DateTime<Utc>>,
    pub(crate) max_retries: Option<Option<u32>>,
    pub(crate) exc: Option<ExceptionInfo>,
}

impl Retry {
    /// A retry after the task's `default_retry_delay`.
    pub fn new() -> Self {
        Retry::default()
    }

    /// Retry in `seconds`.
    pub fn countdown(mut self, seconds: f64) -> Self {
        self.countdown = Some(Duration::from_secs_f64(seconds.max(0.0)));
        self
    }

    /// Retry at `eta`.
    pub fn eta(mut self, eta: DateTime<Utc>) -> Self {
        self.eta = Some(eta);
        self
    }

    /// Overrides the task's `max_retries` for this call (`None`: retry forever).
    pub fn max_retries(mut self, max: Option<u32>) -> Self {
        self.max_retries = Some(max);
        self
    }

    /// The error that caused the retry: stored with the RETRY state, and the final FAILURE once
    /// the retries are used up.
    pub fn exc(mut self, exc: impl Into<TaskError>) -> Self {
        self.exc = Some(exc.into().inner.exc);
        self
    }

    /// Python's `str(Retry)`: `Retry in 0.1s: ValueError('boom')`.
    pub(crate) fn describe(&self, when: Duration) -> String {
        let mut s = format!("Retry in {}s", py_float(when.as_secs_f64()));
        if let Some(e) = &self.exc {
            s.push_str(": ");
            s.push_str(&e.repr());
        }
        s
    }
}

/// Formats seconds as Python prints a float or int countdown (`1`, `0.1`).
fn py_float(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as i64)
    } else {
        format!("{s}")
    }
}

impl From<Retry> for TaskError {
    fn from(r: Retry) -> Self {
        let exc = ExceptionInfo::new("celery.exceptions", "Retry", "Task can be retried");
        TaskError::control_value(exc, Control::Retry(r))
    }
}

/// Rejects the message (Celery's `raise Reject(reason, requeue=...)`): with `requeue` it goes back
/// to the queue, otherwise it is dropped and FAILURE `Reject` is stored (Celery 5.7).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub(crate) reason: String,
    pub(crate) requeue: bool,
}

impl Reject {
    /// Rejects the message with `reason`, back to the queue if `requeue`.
    pub fn new(reason: impl Into<String>, requeue: bool) -> Self {
        Reject { reason: reason.into(), requeue }
    }
}

impl From<Reject> for TaskError {
    fn from(r: Reject) -> Self {
        let exc = ExceptionInfo {
            exc_type: "Reject".into(),
            exc_message: serde_json::json!([r.reason, r.requeue]),
            exc_module: "celery.exceptions".into(),
        };
        TaskError::control_value(exc, Control::Reject(r))
    }
}

/// Ends the task without storing any state (Celery's `raise Ignore()`); the message is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ignore;

impl From<Ignore> for TaskError {
    fn from(_: Ignore) -> Self {
        TaskError::control_value(ExceptionInfo::new("celery.exceptions", "Ignore", ""), Control::Ignore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_values_keep_an_exception_for_logs() {
        let e: TaskError = Retry::new().countdown(0.1).exc(TaskError::value_error("boom")).into();
        let Some(Control::Retry(r)) = e.control() else { panic!("not a retry") };
        assert_eq!(r.describe(Duration::from_millis(100)), "Retry in 0.1s: ValueError('boom')");
        assert_eq!(Retry::new().describe(Duration::from_secs(180)), "Retry in 180s");
        let e: TaskError = Reject::new("nope", true).into();
        assert_eq!(e.exception().repr(), "Reject('nope', True)");
        assert!(TaskError::value_error("x").control().is_none());
    }
}
