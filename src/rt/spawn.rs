//! Running futures on the current shard: spawn (detached or awaited), the blocking pool,
//! yielding, and blocking a plain thread on a future. Also whether this thread is an executor.

use std::cell::Cell;

thread_local! {
    static ON_EXECUTOR: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread runs a celeriac executor (a shard or the I/O thread), so work can
/// use its shard-local connections directly instead of hopping threads.
pub fn on_executor() -> bool {
    ON_EXECUTOR.with(|c| c.get())
}

/// Marks the calling thread as an executor (done once, as it starts).
pub(super) fn mark_executor() {
    ON_EXECUTOR.with(|c| c.set(true));
}

/// A task spawned on this shard whose output can be awaited ([`spawn`]).
pub struct LocalTask<T>(glommio::Task<T>);

impl<T> std::future::Future for LocalTask<T> {
    type Output = T;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Spawns a future on the current shard's executor; it runs until completion (detached).
/// glommio polls it at once, up to its first pending point, before this returns.
pub fn spawn_local<F>(fut: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::spawn_local(fut).detach();
}

/// Spawns a future on the current shard's executor and returns a handle that yields its output
/// (dropping the handle cancels the task). Polled at once, as [`spawn_local`].
pub fn spawn<F>(fut: F) -> LocalTask<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    LocalTask(glommio::spawn_local(fut))
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

/// The text a panic was raised with (`panic!("…")` payloads are `&str` or `String`).
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
