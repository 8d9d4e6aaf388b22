//! The Redis transport, byte-compatible with kombu 5.7 (PROTOCOL.md §2): our own pipelined RESP
//! client on the shard runtime, the kombu key layout, and a broker/consumer pair.

mod broker;
mod connection;
mod kombu;
mod local;

pub use broker::{flush, FanoutSubscription, RedisAck, RedisBroker, RedisConsumer};
pub use connection::{frame_bytes, Connection, RedisError};
pub use kombu::{Keys, TransportOptions, SEP};
pub use local::writer;

pub use crate::config::{RedisAddr, RedisUrl};
pub use redis_protocol::resp2::types::BytesFrame;
