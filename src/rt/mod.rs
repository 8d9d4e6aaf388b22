//! Layer 1: the only place that names the async runtime (glommio on io_uring).
//!
//! Everything else imports `crate::rt`: shard placement and start-up, local spawn, timers,
//! blocking offload, and the cross-thread wake-ups that let one shard (or a client on any
//! thread) wake a parked executor. Swapping the runtime (an epoll fallback for containers where
//! io_uring is blocked) is a change of this folder. This file declares and re-exports only.

mod deferred;
mod executor;
mod heartbeat;
mod io_thread;
mod mutex;
mod notify;
mod shard;
mod spawn;
mod stop_thread;
mod timer;

pub use deferred::{defer, dispatching, run_deferred};
pub(crate) use executor::{spawn_executor, PREEMPT};
pub use io_thread::{run_here_or_wait, IoThread};
pub(crate) use mutex::lock;
pub use notify::Notify;
pub use shard::{cpus, start_shards, ShardHandle};
pub(crate) use spawn::panic_text;
pub use spawn::{block_on, on_executor, spawn, spawn_blocking, spawn_local, yield_now, LocalTask};
pub(crate) use stop_thread::StopThread;
pub use timer::{sleep, sleep_anywhere, timeout_anywhere};

/// TCP and Unix-socket streams on the shard's io_uring (for the transports' connections).
pub(crate) mod net {
    pub(crate) use glommio::net::{TcpStream, UnixStream};
}
