//! A dedicated I/O executor for work that starts outside any shard: a client on a plain thread
//! or inside tokio hands jobs to it and awaits (or blocks on) the answer. Jobs run on one glommio
//! executor, so they use the same shard-local connections as worker shards do.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use glommio::{LocalExecutorBuilder, Placement};

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The process's client I/O executor, started on first use.
pub struct IoThread {
    tx: flume::Sender<Job>,
}

impl IoThread {
    /// The shared instance.
    pub fn global() -> &'static IoThread {
        static IO: OnceLock<IoThread> = OnceLock::new();
        IO.get_or_init(|| {
            let (tx, rx) = flume::unbounded::<Job>();
            let builder =
                LocalExecutorBuilder::new(Placement::Unbound).preempt_timer(super::PREEMPT).io_memory(1 << 20);
            super::spawn_executor("celeriac-io".into(), builder, move || async move {
                while let Ok(job) = rx.recv_async().await {
                    glommio::spawn_local(job()).detach();
                }
            })
            .expect("starting the celeriac-io executor");
            IoThread { tx }
        })
    }

    /// Runs `f()` on the I/O executor; the returned future (usable from any executor) yields its
    /// output.
    pub fn run<F, Fut, T>(&self, f: F) -> impl Future<Output = T> + Send + 'static
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (done_tx, done_rx) = flume::bounded::<T>(1);
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let out = f().await;
                let _ = done_tx.send(out);
            })
        });
        let sent = self.tx.send(job).is_ok();
        async move {
            assert!(sent, "the celeriac-io executor stopped");
            done_rx.recv_async().await.expect("an I/O job was dropped before it finished")
        }
    }
}

/// Runs `job` where it is called: on a shard, as one of the shard's tasks (its I/O joins the
/// shard's own connections; the caller does not wait, and `on_error` hears a failure); anywhere
/// else, on the I/O executor, waiting for the outcome.
pub fn run_here_or_wait<F, Fut, E>(job: F, on_error: impl FnOnce(E) + 'static) -> Result<(), E>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: Send + 'static,
{
    if super::on_executor() {
        super::spawn_local(async move {
            if let Err(e) = job().await {
                on_error(e);
            }
        });
        return Ok(());
    }
    super::block_on(IoThread::global().run(job))
}
