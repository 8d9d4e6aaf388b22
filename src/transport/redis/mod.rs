//! The Redis transport, byte-compatible with kombu 5.7 (PROTOCOL.md §2): our own pipelined RESP
//! client on the shard runtime (plus pooled blocking connections for sends from threads outside
//! it), the kombu key layout, and a broker/consumer pair.

mod blocking;
mod broker;
mod connection;
mod kombu;
mod local;
mod owner;
mod script;
mod tls;

pub use broker::{flush, FanoutSubscription, RedisAck, RedisBroker, RedisConsumer};
pub use connection::{frame_bytes, Connection, RedisError};
pub use kombu::{Keys, TransportOptions, SEP};
pub use local::writer;
pub use script::Script;

/// Why a Redis server cannot be used, at a worker's start: `Err(true)` with a reason when
/// retrying cannot help (a refused password, a missing database), `Err(false)` when it may
/// (refused connection, loading data).
pub fn check(url: &RedisUrl) -> Result<(), (bool, String)> {
    blocking::ping(url).map_err(|e| {
        let why = e.to_string();
        let fatal = ["WRONGPASS", "NOAUTH", "NOPERM", "invalid password", "invalid username", "DB index"]
            .iter()
            .any(|m| why.contains(m));
        (fatal, why)
    })
}

/// Checks a `rediss://` URL's TLS files at start, so a wrong path fails `build()` instead of the
/// first connection.
pub fn check_tls(url: &RedisUrl) -> Result<(), String> {
    match &url.tls {
        Some(t) => tls::client_config(t).map(|_| ()),
        None => Ok(()),
    }
}

pub use crate::config::{RedisAddr, RedisUrl};
pub use redis_protocol::resp2::types::BytesFrame;
