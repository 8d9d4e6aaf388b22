//! The crate's one error type: each module's error wrapped, so callers can branch on the kind.

use crate::protocol::ProtocolError;

/// Every error celeriac returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message or value could not be read or written.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// `Result` with celeriac's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
