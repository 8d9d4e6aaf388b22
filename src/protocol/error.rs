//! Errors of the wire layer: every one names the content type, compression or field at fault.

/// A message or value could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The worker's `accept_content` does not allow this content type (kombu's ContentDisallowed).
    #[error("refusing to deserialize content of type {content_type} (not in accept_content)")]
    ContentDisallowed {
        /// The content type.
        content_type: String,
    },
    /// The content type is not one celeriac can read at all.
    #[error("unknown content type {0:?}")]
    UnknownContentType(String),
    /// The bytes are not valid for their declared content type.
    #[error("cannot decode {content_type}: {reason}")]
    Decode {
        /// The content type.
        content_type: String,
        /// The decoder's words.
        reason: String,
    },
    /// A value cannot be written in the requested content type.
    #[error("cannot encode as {content_type}: {reason}")]
    Encode {
        /// The content type.
        content_type: String,
        /// The encoder's words.
        reason: String,
    },
    /// The `compression` header names a scheme we do not know.
    #[error("unknown compression {0:?}")]
    UnknownCompression(String),
    /// Compressed bytes are corrupt.
    #[error("cannot {op} with {method}: {reason}")]
    Compression {
        /// The compression scheme.
        method: &'static str,
        /// `compress` or `decompress`.
        op: &'static str,
        /// The codec's words.
        reason: String,
    },
    /// A value is larger than the configured limit allows.
    #[error("{what} larger than the limit of {limit} bytes (worker_max_body_size)")]
    TooLarge {
        /// What is too large (a body, its inflated form).
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The message is structurally wrong (a missing required header, a body of the wrong shape).
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ProtocolError {
    pub(crate) fn decode(content_type: &str, reason: impl std::fmt::Display) -> Self {
        ProtocolError::Decode { content_type: content_type.to_owned(), reason: reason.to_string() }
    }
    pub(crate) fn encode(content_type: &str, reason: impl std::fmt::Display) -> Self {
        ProtocolError::Encode { content_type: content_type.to_owned(), reason: reason.to_string() }
    }
}
