//! What a result-store operation can fail with.

/// A result-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("no result backend is configured (set result_backend)")]
    Disabled,
    #[error("result backend connection lost: {0}")]
    ConnectionLost(String),
    #[error("a stored result cannot be read: {0}")]
    Corrupt(String),
    /// The store answered and refused the write (out of memory, read-only replica, …).
    #[error("result backend refused the write: {0}")]
    Refused(String),
}
