//! Layer 6: the sharded worker. One shard per CPU, each with its own broker consumer, decoder,
//! run queue and result writer; idle shards steal reserved-but-not-started deliveries from busy
//! ones (bounded batches, lock-free deques, explicit wake-ups).
//!
//! Life of a delivery on a shard: consumer → local run queue (reserved, unacked) → start: decode,
//! look up, extract arguments, call → ack (early by default, after the result with acks_late) →
//! store the result.

mod banner;
mod canvas;
mod chord;
mod consuming;
mod events;
mod gossip;
mod heartbeat;
mod inspect;
mod lifecycle;
mod mailbox;
mod nodename;
mod outcome;
mod peers;
mod pool;
mod rate_limit;
mod request;
mod retry;
mod revoke;
mod settlement;
mod shard;
mod shard_ctx;
mod shared;
mod signal;
mod steal;
mod time_limit;
mod timer;
mod trace;

pub use banner::banner;
pub use lifecycle::{Phase, ShutdownMode};
pub use nodename::expand_nodename;
pub use pool::{WorkerBuilder, WorkerHandle, WorkerStats};
pub(crate) use signal::Hooks;
pub use signal::{Hook, Signal};
