//! A Lua script run by its SHA: `EVALSHA` so Redis neither receives nor hashes the text per call;
//! a server that does not know it yet (restarted, flushed) gets it by `EVAL`, which also caches
//! it there.

use std::sync::OnceLock;

use super::connection::frame_bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::{Connection, RedisError};

/// A script and the SHA1 that `SCRIPT LOAD` answered for it once.
pub(crate) struct Script {
    text: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    /// A script; nothing is sent until its first [`Script::call`].
    pub(crate) const fn new(text: &'static str) -> Self {
        Script { text, sha: OnceLock::new() }
    }

    /// Runs the script with `keys` and `args` on `conn` and returns its reply.
    pub(crate) async fn call(
        &self,
        conn: &Connection,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<BytesFrame, RedisError> {
        if self.sha.get().is_none() {
            if let Ok(f) = conn.call(&[b"SCRIPT", b"LOAD", self.text.as_bytes()]).await {
                if let Some(sha) = frame_bytes(&f) {
                    let _ = self.sha.set(String::from_utf8_lossy(sha).into_owned());
                }
            }
        }
        let n = keys.len().to_string();
        let command = |verb: &'static [u8], head: &[u8]| {
            let mut v: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
            v.extend([verb, head, n.as_bytes()]);
            v.extend_from_slice(keys);
            v.extend_from_slice(args);
            conn.call(&v)
        };
        if let Some(sha) = self.sha.get() {
            match command(b"EVALSHA", sha.as_bytes()).await {
                Err(RedisError::Server(e)) if e.starts_with("NOSCRIPT") => {}
                other => return other,
            }
        }
        command(b"EVAL", self.text.as_bytes()).await
    }
}
