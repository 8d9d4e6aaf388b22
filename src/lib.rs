//! celeriac: Celery, the distributed task queue, rebuilt in Rust.
//!
//! Same wire protocol as Celery 5.7 (a Python client can call a celeriac worker and the other way
//! round), a thread-per-core worker on glommio/io_uring, and typed tasks:
//!
//! ```no_run
//! use std::time::Duration;
//! use celeriac::App;
//!
//! fn add(x: i64, y: i64) -> i64 { x + y }
//!
//! let app = App::builder("proj")
//!     .broker("memory://")
//!     .result_backend("memory://")
//!     .task("proj.tasks.add", ["x", "y"], add)
//!     .build()?;
//! let worker = app.worker().start()?;
//! let r = app.send_task("proj.tasks.add", (4, 4))?;
//! assert_eq!(r.get::<i64>(Duration::from_secs(1))?, 8);
//! worker.shutdown();
//! # Ok::<(), celeriac::Error>(())
//! ```
//!
//! Layers (dependencies point down): `protocol` (0) → `config`, `rt` (1) → `transport` (2) →
//! `backend` (3) → `client` (4) → `task` (5) → `worker` (6) → `app` (7) → `cli`.

pub mod backend;
pub mod beat;
pub mod canvas;
pub mod cli;
pub mod client;
pub mod config;
pub mod events;
pub mod protocol;
pub mod rt;
pub mod task;
pub mod transport;
pub mod worker;

mod app;
mod error;

pub use app::{App, AppBuilder};
pub use canvas::{chain, chord, group};
pub use client::{Applied, AsyncResult, Client, GroupResult, SendOptions, TaskRef, TypedResult};
pub use config::Config;
pub use error::{Error, Result, TaskFailure};
pub use protocol::Signature;
pub use protocol::State;
pub use task::{blocking, Ignore, Reject, Retry, ShardState, TaskCtx, TaskError, TaskOptions};
pub use worker::{ShutdownMode, Signal, WorkerHandle};

/// This machine's host name, as Python's `socket.gethostname()` reports it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
