//! Layer 3: result backends. A [`Backend`] stores result metas by task id and lets clients wait
//! for a ready state without polling.
//!
//! Available: `memory://` (in-process) and disabled (Celery's default: no results).

mod memory;

pub use memory::MemoryBackend;

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::ResultMeta;

/// A result store shared by the worker's shards and by clients.
#[derive(Clone, Debug)]
pub enum Backend {
    /// No `result_backend` configured: nothing is stored; waiting on a result is an error.
    Disabled,
    Memory(Arc<MemoryBackend>),
}

/// A result-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("no result backend is configured (set result_backend)")]
    Disabled,
    #[error("result backend connection lost: {0}")]
    ConnectionLost(String),
}

impl Backend {
    /// Stores `meta`; an existing SUCCESS is never overwritten (as Celery checks before writing).
    pub fn store(&self, meta: ResultMeta) -> Result<(), BackendError> {
        match self {
            Backend::Disabled => Ok(()),
            Backend::Memory(b) => {
                b.store(meta);
                Ok(())
            }
        }
    }

    /// The stored meta of `task_id`, if any (none means PENDING).
    pub fn get(&self, task_id: &str) -> Result<Option<ResultMeta>, BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => Ok(b.get(task_id)),
        }
    }

    /// Waits until `task_id` reaches a ready state; `None` on timeout.
    pub fn wait_blocking(&self, task_id: &str, timeout: Duration) -> Result<Option<ResultMeta>, BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => Ok(b.waiter(task_id).recv_timeout(timeout).ok()),
        }
    }

    /// Waits, from any executor, until `task_id` reaches a ready state; `None` on timeout.
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<Option<ResultMeta>, BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => {
                let rx = b.waiter(task_id);
                Ok(crate::rt::timeout_anywhere(timeout, rx.recv_async()).await.and_then(Result::ok))
            }
        }
    }

    /// Deletes the stored result.
    pub fn forget(&self, task_id: &str) -> Result<(), BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => {
                b.forget(task_id);
                Ok(())
            }
        }
    }

    /// Whether results are stored at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self, Backend::Disabled)
    }

    /// The URL, for banners and logs.
    pub fn url(&self) -> &str {
        match self {
            Backend::Disabled => "disabled://",
            Backend::Memory(_) => "memory://",
        }
    }
}
