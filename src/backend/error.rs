//! What a result-store operation can fail with.

/// A result-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The app has no result backend (`result_backend` unset or `disabled://`).
    #[error("no result backend is configured (set result_backend)")]
    Disabled,
    /// The store could not be reached, or did not answer in time.
    #[error("result backend connection lost: {0}")]
    ConnectionLost(String),
    /// A stored value is not a result this version can read.
    #[error("a stored result cannot be read: {0}")]
    Corrupt(String),
    /// The store answered and refused the write (out of memory, read-only replica, …).
    #[error("result backend refused the write: {0}")]
    Refused(String),
    /// The backend has no such operation.
    #[error("{0}")]
    Unsupported(&'static str),
}
