//! Layer 2: brokers. A [`Broker`] is a shared, thread-safe handle used by clients to publish;
//! each worker shard opens its own [`Consumer`] from it. Transports are a closed set, so they are
//! one enum (static dispatch on the hot path, `broker.rs`) rather than trait objects; what a
//! delivery needs to be settled is the one seam shared by all ([`Delivery`], `Settler`).
//!
//! Available: `memory://` (in-process) and `redis://` (kombu's layout). AMQP plugs in as a
//! further variant. This file declares and re-exports only.

pub mod amqp;
mod broker;
mod delivery;
mod error;
mod inbox;
mod memory;
mod priority;
pub mod redis;
mod route;
mod tls;

pub use broker::{Broker, Consumer, Fanout};
pub use delivery::{Delivery, Settle};
pub use error::TransportError;
pub use memory::{MemoryBroker, MemoryConsumer};
pub use priority::{priority_bucket, PRIORITY_STEPS};
pub use redis::{RedisBroker, RedisConsumer};
pub use route::Route;
