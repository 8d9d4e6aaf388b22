//! Shards: one glommio executor per CPU, pinned, started before any other worker thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

/// A running shard thread; `join` waits for its main future to finish.
pub struct ShardHandle {
    inner: std::thread::JoinHandle<Result<(), String>>,
    exited: Arc<AtomicBool>,
}

/// Set when a shard's main future ends or is never started (the executor could not be built:
/// io_uring refused, the CPU cannot be bound), so a caller waiting for the shard to come up can
/// tell "not yet" from "never".
struct ExitFlag(Arc<AtomicBool>);

impl Drop for ExitFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl ShardHandle {
    /// Whether the shard's thread has stopped running its main future (or never started it).
    pub fn exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Waits for the shard to stop. A panic that escaped the shard is reported as an error.
    pub fn join(self) -> Result<(), String> {
        match self.inner.join() {
            Ok(built) => built,
            Err(panic) => Err(panic_message(&*panic)),
        }
    }
}

/// The CPU ids this process may run on (its affinity mask), in order.
pub fn cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    if ids.is_empty() {
        ids = (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect();
    }
    ids
}

/// Starts `n` shards; shard `i` is pinned to `cpus()[i % len]` and runs `main(i)`. With
/// `busy_poll`, a pinned shard polls that long for new work before it parks.
///
/// Settings that matter for latency: a 1 ms preemption interval (glommio's default is 100 ms),
/// 1 MiB of registered I/O memory per shard (under the 8 MiB locked-memory limit common on
/// servers and CI), and an unpinned blocking pool so blocking task bodies never share a core's
/// run queue with the shard's I/O.
pub fn start_shards<G, F>(
    n: usize,
    name: &str,
    busy_poll: Option<Duration>,
    main: G,
) -> std::io::Result<Vec<ShardHandle>>
where
    G: Fn(usize) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let cpus = cpus();
    let pin = n <= cpus.len();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let placement = match cpus.get(i) {
            Some(cpu) if pin => Placement::Fixed(*cpu),
            _ => Placement::Unbound,
        };
        let main = main.clone();
        let exited = Arc::new(AtomicBool::new(false));
        let flag = ExitFlag(exited.clone());
        let mut builder = LocalExecutorBuilder::new(placement);
        if let Some(window) = busy_poll {
            builder = builder.spin_before_park(window);
        }
        let builder = builder
            .preempt_timer(super::PREEMPT)
            .io_memory(1 << 20)
            .blocking_thread_pool_placement(PoolPlacement::Unbound(2));
        let h = super::spawn_executor(format!("{name}-{i}"), builder, move || {
            let fut = main(i);
            async move {
                let _flag = flag;
                fut.await
            }
        })
        .map_err(|e| std::io::Error::other(format!("starting shard {i}: {e}")))?;
        handles.push(ShardHandle { inner: h, exited });
    }
    Ok(handles)
}

/// The message of a panic that ended a shard's thread.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    format!("panicked: {}", super::panic_text(panic).unwrap_or("(no message)"))
}
