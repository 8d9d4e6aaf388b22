//! Layer 1: the only place that names the async runtime (glommio on io_uring).
//!
//! Everything else imports `crate::rt`: shard placement and start-up, local spawn, timers,
//! blocking offload, and the cross-thread wake-ups that let one shard (or a client on any
//! thread) wake a parked executor. Swapping the runtime (an epoll fallback for containers where
//! io_uring is blocked) is a change of this folder.

mod deferred;
mod heartbeat;
mod io_thread;
mod notify;
mod shard;
mod timer;

pub use deferred::{defer, dispatching, run_deferred};
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

/// How long glommio lets a run of ready tasks go on before it polls I/O again.
pub(crate) const PREEMPT: std::time::Duration = std::time::Duration::from_millis(1);

/// Runs `main()` on a new glommio executor built from `builder`, on a new thread named `name`
/// (shards and the I/O thread start here). The thread registers with the [`heartbeat`] before
/// the executor's first round, so even a first round that glommio strands is rescued, and the
/// beat task is the first task spawned. The join handle yields `main`'s output, or why the
/// executor could not be built.
pub(crate) fn spawn_executor<G, F, T>(
    name: String,
    builder: glommio::LocalExecutorBuilder,
    main: G,
) -> std::io::Result<std::thread::JoinHandle<Result<T, String>>>
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        let ex = builder.make().map_err(|e| e.to_string())?;
        let beat = heartbeat::register();
        ON_EXECUTOR.with(|c| c.set(true));
        let main_beat = beat.clone();
        Ok(ex.run(async move {
            spawn_local(main_beat.task());
            let out = main().await;
            // Deregisters and releases the beat task's waker here, on the executor.
            drop(main_beat);
            out
        }))
    })
}

/// The text a panic was raised with (`panic!("…")` payloads are `&str` or `String`).
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Locks `m`, taking the data of a poisoned lock as it is (its holders only swap whole values).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawns a future on the current shard's executor; it runs until completion (detached).
/// glommio polls it at once, up to its first pending point, before this returns.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

    #[test]
    fn ready_tasks_are_not_stranded_when_a_round_starts_preempted() {
        // A task queue with a 20 µs latency budget makes glommio's preemption timer fire before
        // some scheduling rounds begin; a receiver woken from another thread is then stranded in
        // a parked executor (glommio 0.9.0: without a heartbeat this hung in 3 of 6 runs here,
        // and with a timer-driven one, which is stranded the same way, in 3 of 6).
        let n = 300;
        let (tx, rx) = flume::unbounded::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let ex = super::spawn_executor(
            "stranding".into(),
            LocalExecutorBuilder::new(Placement::Unbound),
            move || async move {
                let tight = glommio::executor().create_task_queue(
                    Shares::default(),
                    Latency::Matters(Duration::from_micros(20)),
                    "tight",
                );
                let got = glommio::spawn_local_into(
                    async move {
                        let mut got = 0;
                        while got < n && rx.recv_async().await.is_ok() {
                            got += 1;
                        }
                        got
                    },
                    tight,
                )
                .expect("task queue")
                .await;
                done_tx.send(got).unwrap();
            },
        )
        .unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..n {
                tx.send(i).unwrap();
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let got = done_rx.recv_timeout(Duration::from_secs(30)).expect("the receiver was stranded");
        assert_eq!(got, n);
        sender.join().unwrap();
        ex.join().unwrap().unwrap();
    }

    #[test]
    fn an_executor_stranded_in_its_first_round_is_rescued() {
        // With a 10 µs preemption timer the first round here begins with the timer already
        // fired: glommio runs nothing and parks before any task of ours has run, so there is no
        // waker to call, only the heartbeat's signal (without it, 0 of 8 executors started, in
        // each of 3 runs; with it, 8 of 8).
        let starts: Vec<_> = (0..8)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel();
                let builder = LocalExecutorBuilder::new(Placement::Unbound).preempt_timer(Duration::from_micros(10));
                let ex = super::spawn_executor(format!("first-round-{i}"), builder, move || async move {
                    tx.send(()).unwrap();
                })
                .unwrap();
                (rx, ex)
            })
            .collect();
        for (rx, ex) in starts {
            rx.recv_timeout(Duration::from_secs(20)).expect("an executor never ran its first task");
            ex.join().unwrap().unwrap();
        }
    }
}
