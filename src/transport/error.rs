//! What a broker operation can fail with.

/// A broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("broker connection lost: {0}")]
    ConnectionLost(String),
    #[error("broker refused a command: {0}")]
    Server(String),
}
