//! The crate's one error type: each module's error wrapped, so callers can branch on the kind.

use std::time::Duration;

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::protocol::{ExceptionInfo, ProtocolError, State};
use crate::transport::TransportError;

/// Every error celeriac returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message or value could not be read or written.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A setting cannot work.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The broker failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The result backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The task ran and failed (or was revoked): the exception Python would re-raise.
    #[error("{0}")]
    TaskFailed(Box<TaskFailure>),
    /// `get()` waited `waited` and the task was not ready.
    #[error("task {task_id} not ready after {waited:?}")]
    Timeout {
        /// The task waited for.
        task_id: String,
        /// How long.
        waited: Duration,
    },
    /// The task's result does not fit the requested type.
    #[error("result of task {task_id} does not fit the requested type: {reason}")]
    ResultType {
        /// The task.
        task_id: String,
        /// Why the value does not fit.
        reason: String,
    },
    /// Arguments given to `send_task` cannot be sent.
    #[error("bad task arguments: {0}")]
    Args(String),
    /// A task registration is wrong (duplicate name, parameter names not matching).
    #[error("task registration: {0}")]
    Registration(String),
    /// The worker could not start its shards.
    #[error("worker runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl Error {
    /// A setting (or flag) that cannot work, and why: what a bad URL, option or schedule entry
    /// fails the start with.
    pub fn invalid(setting: &'static str, reason: impl Into<String>) -> Error {
        Error::Config(ConfigError::Invalid { setting, reason: reason.into() })
    }
}

/// `Result` with celeriac's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A task that failed (or was revoked): the exception Python would raise, with its traceback.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    /// The task's id.
    pub task_id: String,
    /// The state it ended in (FAILURE, REVOKED, …).
    pub state: State,
    /// The exception as Celery stores it.
    pub exception: ExceptionInfo,
    /// The remote traceback, if the worker sent one.
    pub traceback: Option<String>,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {} {}: {}: {}", self.task_id, self.state, self.exception.exc_type, self.exception.message())
    }
}
