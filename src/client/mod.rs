//! Layer 4: the producer side. A [`Client`] is `Send + Sync` and cheap to clone: use it from any
//! thread or runtime (a tokio web service, a plain `main`, a task on a shard). `send_task`
//! publishes and returns an [`AsyncResult`] whose `get` blocks, and whose `get_async` is a future
//! any executor can await.

mod async_result;
mod control;
mod group_result;
mod options;
mod producer;
mod replies;
mod routes;
mod signature;
mod task_ref;

pub use crate::error::TaskFailure;
pub use async_result::AsyncResult;
pub use control::{Control, Inspect, Outcome, QueueInfo, Reply, ScheduledTask, Stats, TaskInfo, TaskWhere};
pub use group_result::{Applied, GroupResult};
pub use options::SendOptions;
pub use producer::Client;
pub use routes::Router;
pub(crate) use signature::options_of;
pub use task_ref::{TaskRef, TypedResult};
