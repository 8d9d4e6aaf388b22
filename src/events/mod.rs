//! Layer 3: Celery's events (`celery/events/`). The [`Dispatcher`] sends worker events
//! (`worker-online`, `worker-heartbeat`, `worker-offline`) and, when task events are on, the
//! task events, batched per shard into one `task.multi` message per run of tasks (no timer);
//! the [`Receiver`] reads them back, from celeriac and Python senders alike, and [`State`] keeps
//! what they say of workers and tasks, as `celery.events.state` does.

mod clock;
mod dispatcher;
mod receiver;
mod state;

pub use clock::Clock;
pub use dispatcher::Dispatcher;
pub use receiver::Receiver;
pub use state::{State, TaskState, WorkerState};
