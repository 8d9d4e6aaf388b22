//! Layer 1: the only place that names the async runtime (glommio on io_uring).
//!
//! Everything else imports `crate::rt`: shard placement and start-up, local spawn, timers,
//! blocking offload, and the cross-thread wake-ups that let one shard (or a client on any
//! thread) wake a parked executor. Swapping the runtime (an epoll fallback for containers where
//! io_uring is blocked) is a change of this folder.

mod io_thread;
mod notify;
mod shard;
mod timer;

pub use io_thread::IoThread;
pub use notify::Notify;
pub use shard::{cpus, start_shards, LocalTask, ShardHandle};
pub use timer::{sleep, sleep_anywhere, timeout_anywhere};

thread_local! {
    static ON_EXECUTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread runs a celeriac executor (a shard or the I/O thread), so work can
/// use its shard-local connections directly instead of hopping threads.
pub fn on_executor() -> bool {
    ON_EXECUTOR.with(|c| c.get())
}

pub(crate) fn mark_executor() {
    ON_EXECUTOR.with(|c| c.set(true));
}

/// Spawns a future on the current shard's executor; it runs until completion (detached).
pub fn spawn_local<F>(fut: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::spawn_local(fut).detach();
}

/// Runs `f` on the shard's blocking thread pool, so a CPU-heavy or blocking task body never
/// stalls the shard's I/O.
pub async fn spawn_blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Gives other tasks on this shard a turn.
pub async fn yield_now() {
    glommio::yield_if_needed().await
}

/// Blocks the calling (non-shard) thread on a future: the blocking variants of client calls.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    futures_lite::future::block_on(fut)
}

/// TCP and Unix-socket streams on the shard's io_uring.
pub mod net {
    pub use glommio::net::{TcpStream, UnixStream};
}
