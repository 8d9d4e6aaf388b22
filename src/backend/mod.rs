//! Layer 3: result backends. A [`Backend`] stores result metas by task id and lets clients wait
//! for a ready state without polling.
//!
//! Available: `memory://` (in-process), `redis://` (Celery's layout), `rpc://` (replies over
//! the AMQP broker) and disabled (Celery's default: no results). This file declares and re-exports only.

mod chord;
mod error;
mod memory;
mod redis;
mod result_batch;
mod rpc;
mod store;

pub use self::redis::RedisBackend;
pub use chord::{ChordCount, ChordPart, CLAIM_SECS};
pub use error::BackendError;
pub use memory::MemoryBackend;
pub use rpc::RpcBackend;
pub(crate) use store::ShardStore;
pub use store::{Backend, ChordOp, ResultWatch, Stored};
