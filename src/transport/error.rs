//! What a broker operation can fail with.

/// A broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker could not be reached, or the connection broke.
    #[error("broker connection lost: {0}")]
    ConnectionLost(String),
    /// The broker refused the command; its words.
    #[error("broker refused a command: {0}")]
    Server(String),
}
