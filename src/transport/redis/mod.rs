//! The Redis transport, byte-compatible with kombu 5.7 (PROTOCOL.md §2): our own pipelined RESP
//! client on the shard runtime (plus pooled blocking connections for sends from threads outside
//! it), the kombu key layout, and a broker/consumer pair.

mod blocking;
mod bound;
mod broker;
mod check;
mod connection;
mod kombu;
mod local;
mod options;
mod owner;
mod reply;
mod script;

pub(crate) use blocking::Pool;
pub use bound::BoundQueue;
pub use broker::{FanoutSubscription, RedisBroker, RedisConsumer};
pub use check::{check, check_tls};
pub use connection::RedisError;
pub(crate) use connection::{frame_bytes, Connection};
pub use kombu::{Keys, SEP};
pub(crate) use local::writer;
pub use options::TransportOptions;
pub(crate) use reply::command_on;
pub use reply::{command, Reply};
pub(crate) use script::Script;

pub use crate::config::{RedisAddr, RedisUrl};
/// RESP frames, for the Redis result backend's own connection use inside the crate.
pub(crate) use redis_protocol::resp2::types::BytesFrame;
