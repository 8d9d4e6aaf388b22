//! A Redis reply as celeriac's public API shows it, and one command sent from any thread: for
//! tools, tests and benchmarks that look at what the broker holds (`HLEN unacked`, `LRANGE`),
//! without the RESP crate's types leaking out of this folder.

use redis_protocol::resp2::types::BytesFrame;

use super::{blocking, RedisError, RedisUrl};

/// One reply of a Redis command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other simple strings.
    Status(String),
    /// An integer.
    Int(i64),
    /// A bulk string (binary safe).
    Bulk(Vec<u8>),
    /// An array of replies.
    Array(Vec<Reply>),
    /// The null bulk string or array.
    Nil,
}

impl Reply {
    /// The reply as text: a status or a bulk string (lossily decoded).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The texts of an array reply (elements that are not text are skipped); empty otherwise.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Reply::Array(items) => items.iter().filter_map(Reply::as_text).collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn from_frame(f: BytesFrame) -> Result<Reply, RedisError> {
        Ok(match f {
            BytesFrame::SimpleString(s) => Reply::Status(String::from_utf8_lossy(&s).into_owned()),
            BytesFrame::Integer(n) => Reply::Int(n),
            BytesFrame::BulkString(b) => Reply::Bulk(b.to_vec()),
            BytesFrame::Array(items) => {
                Reply::Array(items.into_iter().map(Reply::from_frame).collect::<Result<_, _>>()?)
            }
            BytesFrame::Null => Reply::Nil,
            BytesFrame::Error(e) => return Err(RedisError::Server(e.to_string())),
        })
    }
}

/// Sends one command to `url` on a connection of the calling thread and returns its reply (an
/// error reply is `RedisError::Server`). Blocking; not for the task path.
pub fn command(url: &RedisUrl, args: &[&[u8]]) -> Result<Reply, RedisError> {
    command_on(&blocking::Pool::default(), url, args)
}

/// [`command`] on a connection of `pool` (kept between calls).
pub(crate) fn command_on(pool: &blocking::Pool, url: &RedisUrl, args: &[&[u8]]) -> Result<Reply, RedisError> {
    let mut replies = pool.pipeline(url, &[args])?;
    Reply::from_frame(replies.pop().unwrap_or(BytesFrame::Null))
}
