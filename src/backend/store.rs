//! The result stores as one enum ([`Backend`]: static dispatch, the one file a new store adds a
//! variant to), the outcome of a worker's write, and a client's watch on one result.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::ResultMeta;

use super::chord::{ChordCount, ChordPart};
use super::error::BackendError;
use super::memory::MemoryBackend;
use super::redis::{RedisBackend, ShardWrites};
use super::rpc::RpcBackend;

/// A result store shared by the worker's shards and by clients.
#[derive(Clone, Debug)]
pub enum Backend {
    /// No `result_backend` configured: nothing is stored; waiting on a result is an error.
    Disabled,
    /// `memory://` (`cache+memory://`): this process only.
    Memory(Arc<MemoryBackend>),
    /// `redis://`, `rediss://`, `redis+socket://`.
    Redis(Arc<RedisBackend>),
    /// `rpc://`: results sent to each client's reply queue on the AMQP broker.
    Rpc(Arc<RpcBackend>),
}

/// One task's ready result on its way to a client (see [`Backend::watch`]). Once it is in, it
/// stays: every later wait returns it at once. Dropped unread, it cancels its subscription.
#[derive(Debug)]
pub struct ResultWatch {
    task_id: String,
    tx: flume::Sender<ResultMeta>,
    rx: flume::Receiver<ResultMeta>,
    backend: Backend,
}

impl ResultWatch {
    /// Blocks until the result is ready; `None` on timeout.
    pub fn wait_blocking(&self, timeout: Duration) -> Option<ResultMeta> {
        self.rx.recv_timeout(timeout).ok().map(|m| self.keep(m))
    }

    /// Waits from any executor until the result is ready; `None` on timeout.
    pub async fn wait(&self, timeout: Duration) -> Option<ResultMeta> {
        crate::rt::timeout_anywhere(timeout, self.rx.recv_async()).await.and_then(Result::ok).map(|m| self.keep(m))
    }

    /// Puts the meta back for the next wait (the channel holds one, and only the backend's
    /// single delivery or this put-back ever fill it).
    fn keep(&self, meta: ResultMeta) -> ResultMeta {
        let _ = self.tx.try_send(meta.clone());
        meta
    }
}

impl Drop for ResultWatch {
    fn drop(&mut self) {
        if !self.rx.is_empty() {
            return; // delivered: the backend let go of it then
        }
        // Abandoned before its result came: let the backend drop its end (after this drop,
        // nobody holds the receiver, which is how it recognises the dead sender).
        let rx = std::mem::replace(&mut self.rx, flume::bounded(1).1);
        drop(rx);
        match &self.backend {
            Backend::Disabled => {}
            Backend::Memory(b) => b.prune(&self.task_id),
            Backend::Redis(b) => b.prune(&self.task_id),
            Backend::Rpc(b) => b.prune(&self.task_id),
        }
    }
}

/// The outcome of a store: done already (in-process backends) or a write in flight on this
/// shard's pipelined connection.
pub enum Stored {
    /// Stored already; the outcome.
    Done(Result<(), BackendError>),
    /// A write in flight; resolves with its outcome.
    Pending(Pin<Box<dyn Future<Output = Result<(), BackendError>>>>),
}

/// A shard's handle on the result store, made once when the shard starts: on Redis it holds the
/// shard's write batch and, through it, the shard's writer, so a store looks nothing up.
pub(crate) enum ShardStore {
    /// A store with no per-shard state (disabled, memory).
    Shared(Backend),
    /// The shard's Redis writes.
    Redis(ShardWrites),
}

impl ShardStore {
    /// Stores `meta` as [`Backend::store`] does.
    pub(crate) fn store(&self, meta: ResultMeta) -> Stored {
        match self {
            ShardStore::Shared(b) => b.store(meta),
            ShardStore::Redis(w) => Stored::Pending(Box::pin(w.store(&meta))),
        }
    }
}

impl Backend {
    /// This shard's handle on the store (see [`ShardStore`]). On an executor only.
    pub(crate) fn on_shard(&self) -> ShardStore {
        match self {
            Backend::Redis(b) => ShardStore::Redis(b.on_shard()),
            other => ShardStore::Shared(other.clone()),
        }
    }

    /// Stores `meta` from a worker shard; an existing SUCCESS is never overwritten (as Celery
    /// checks before writing).
    pub fn store(&self, meta: ResultMeta) -> Stored {
        match self {
            Backend::Disabled => Stored::Done(Ok(())),
            Backend::Memory(b) => {
                b.store(meta);
                Stored::Done(Ok(()))
            }
            Backend::Redis(b) => Stored::Pending(Box::pin(b.store_local(&meta))),
            Backend::Rpc(b) => Stored::Pending(Box::pin(b.store(&meta))),
        }
    }

    /// Stores `meta` from any thread without waiting: on a shard it joins the shard's pipelined
    /// writes (so it lands before anything the shard stores later); elsewhere the I/O thread
    /// writes it. Failures are logged.
    pub fn store_detached(&self, meta: ResultMeta) {
        let what = meta.task_id.clone();
        let log = move |r: Result<(), BackendError>| {
            if let Err(e) = r {
                tracing::error!("Cannot store the state of task {what}: {e}");
            }
        };
        match self {
            Backend::Disabled => {}
            Backend::Memory(b) => b.store(meta),
            Backend::Redis(b) if crate::rt::on_executor() => {
                let write = b.store_local(&meta);
                crate::rt::spawn_local(async move { log(write.await) });
            }
            Backend::Redis(b) => {
                let b = b.clone();
                // Queued on the I/O thread at once; nobody waits for the reply.
                drop(crate::rt::IoThread::global().run(move || async move { log(b.store_local(&meta).await) }));
            }
            Backend::Rpc(b) if crate::rt::on_executor() => {
                let send = b.store(&meta);
                crate::rt::spawn_local(async move { log(send.await) });
            }
            Backend::Rpc(b) => {
                let b = b.clone();
                drop(crate::rt::IoThread::global().run(move || async move { log(b.store(&meta).await) }));
            }
        }
    }

    /// The stored meta of `task_id`, if any (none means PENDING).
    pub fn get(&self, task_id: &str) -> Result<Option<ResultMeta>, BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => Ok(b.get(task_id)),
            Backend::Redis(b) => b.get(task_id),
            Backend::Rpc(b) => Ok(b.get(task_id)),
        }
    }

    /// The stored meta of `task_id`, read from an executor without blocking it (a task body
    /// polling other results, as `celery.chord_unlock` does).
    pub fn get_async(&self, task_id: &str) -> Pin<Box<dyn Future<Output = Result<Option<ResultMeta>, BackendError>>>> {
        match self {
            Backend::Redis(b) => Box::pin(b.get_local(task_id)),
            other => Box::pin(std::future::ready(other.get(task_id))),
        }
    }

    /// Starts listening for `task_id`'s ready result. On Redis this queues the SUBSCRIBE without
    /// waiting, so a client that watches before it publishes (Celery's `on_task_call`) finds the
    /// result already on its way when it calls `get()`: no round trip after the publish.
    pub fn watch(&self, task_id: &str) -> Result<ResultWatch, BackendError> {
        let (tx, rx) = flume::bounded(1);
        match self {
            Backend::Disabled => return Err(BackendError::Disabled),
            Backend::Memory(b) => b.register(task_id, tx.clone()),
            Backend::Redis(b) => b.register(task_id, tx.clone()),
            Backend::Rpc(b) => b.register(task_id, tx.clone()),
        }
        Ok(ResultWatch { task_id: task_id.to_owned(), tx, rx, backend: self.clone() })
    }

    /// Whether a result is worth watching from the moment its task is sent (Celery's
    /// `on_task_call`): on Redis the subscription then costs `get()` no round trip; an in-process
    /// store hands the result over at once whenever the watch starts.
    /// On rpc:// the reply queue must exist before the worker replies (a reply to a missing
    /// queue is dropped), which the first watch makes sure of, as Celery's `on_task_call` declares
    /// it before sending.
    pub fn watches_at_send(&self) -> bool {
        matches!(self, Backend::Redis(_) | Backend::Rpc(_))
    }

    /// Deletes the stored result.
    pub fn forget(&self, task_id: &str) -> Result<(), BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => {
                b.forget(task_id);
                Ok(())
            }
            Backend::Redis(b) => b.forget(task_id),
            Backend::Rpc(b) => {
                b.forget(task_id);
                Ok(())
            }
        }
    }

    /// Saves a group's member ids (`GroupResult.save()`).
    pub fn save_group(&self, group_id: &str, task_ids: &[String]) -> Result<(), BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => {
                b.save_group(group_id, task_ids);
                Ok(())
            }
            Backend::Redis(b) => b.save_group(group_id, task_ids),
            Backend::Rpc(_) => Err(BackendError::Unsupported("rpc:// keeps no group results (as in Celery)")),
        }
    }

    /// Restores a saved group's member ids (`GroupResult.restore()`).
    pub fn restore_group(&self, group_id: &str) -> Result<Option<Vec<String>>, BackendError> {
        match self {
            Backend::Disabled => Err(BackendError::Disabled),
            Backend::Memory(b) => Ok(b.restore_group(group_id)),
            Backend::Redis(b) => b.restore_group(group_id),
            Backend::Rpc(_) => Err(BackendError::Unsupported("rpc:// keeps no group results (as in Celery)")),
        }
    }

    /// Whether the result store answers, from a thread outside the shards: `Err((fatal, why))`,
    /// where `fatal` says retrying cannot help (a refused password).
    pub fn check(&self) -> Result<(), (bool, String)> {
        match self {
            Backend::Disabled | Backend::Memory(_) => Ok(()),
            Backend::Redis(b) => crate::transport::redis::check(&b.url),
            // The broker it replies over is checked as the broker.
            Backend::Rpc(_) => Ok(()),
        }
    }

    /// Whether results are stored at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self, Backend::Disabled)
    }

    /// The URL, for banners and logs (passwords hidden).
    pub fn url(&self) -> String {
        match self {
            Backend::Disabled => "disabled://".to_owned(),
            Backend::Memory(_) => "memory://".to_owned(),
            Backend::Redis(b) => b.url.redacted(),
            Backend::Rpc(_) => "rpc://".to_owned(),
        }
    }
}

/// A chord operation's outcome, on the executor that polls it.
pub type ChordOp<T> = Pin<Box<dyn Future<Output = Result<T, BackendError>>>>;

fn ready<T: 'static>(r: Result<T, BackendError>) -> ChordOp<T> {
    Box::pin(std::future::ready(r))
}

fn no_chords(b: &Backend) -> BackendError {
    BackendError::Unsupported(b.refuses_chords().unwrap_or("this result backend does not support chords"))
}

/// Chord counting on each store: native on Redis and memory (rpc:// has none, as in Celery).
impl Backend {
    /// Why this store cannot count chords; `None` when it can (Redis, memory).
    pub fn refuses_chords(&self) -> Option<&'static str> {
        match self {
            Backend::Redis(_) | Backend::Memory(_) => None,
            Backend::Rpc(_) => Some("the rpc result backend does not support chords (as in Celery)"),
            Backend::Disabled => Some("starting chords requires a result backend to be configured"),
        }
    }

    /// Stores a chord's size before its header is sent (on an executor).
    pub fn set_chord_size(&self, group_id: &str, size: u64) -> ChordOp<()> {
        match self {
            Backend::Redis(b) => Box::pin(b.set_chord_size(group_id, size)),
            Backend::Memory(b) => {
                b.chords.set_size(group_id, size);
                ready(Ok(()))
            }
            other => ready(Err(no_chords(other))),
        }
    }

    /// [`Self::set_chord_size`] from a thread outside the shards, waiting for it.
    pub fn set_chord_size_blocking(&self, group_id: &str, size: u64) -> Result<(), BackendError> {
        match self {
            Backend::Redis(b) => {
                let (b, g) = (b.clone(), group_id.to_owned());
                crate::rt::block_on(crate::rt::IoThread::global().run(move || b.set_chord_size(&g, size)))
            }
            other => crate::rt::block_on(other.set_chord_size(group_id, size)),
        }
    }

    /// Counts a header task's outcome towards its chord (`on_chord_part_return`).
    pub fn chord_part_return(&self, group_id: &str, index: Option<i64>, part: ChordPart) -> ChordOp<ChordCount> {
        match self {
            Backend::Redis(b) => Box::pin(b.chord_part_return(group_id, index, part)),
            Backend::Memory(b) => ready(Ok(b.chords.part_return(group_id, index, part))),
            other => ready(Err(no_chords(other))),
        }
    }

    /// Extends the dispatch claim `token` just before the body is sent; `false`: lost to another.
    pub fn chord_claim_extend(&self, group_id: &str, token: &str) -> ChordOp<bool> {
        match self {
            Backend::Redis(b) => Box::pin(b.chord_claim_extend(group_id, token)),
            Backend::Memory(_) => ready(Ok(true)),
            other => ready(Err(no_chords(other))),
        }
    }

    /// Drops a chord's state once its body was sent (the claim `token` must still hold).
    pub fn chord_cleanup(&self, group_id: &str, token: &str) -> ChordOp<bool> {
        match self {
            Backend::Redis(b) => Box::pin(b.chord_cleanup(group_id, token)),
            Backend::Memory(b) => ready(Ok(b.chords.cleanup(group_id, token))),
            other => ready(Err(no_chords(other))),
        }
    }

    /// Forgets a failed chord's size, so a late copy of a part does not fail its body again.
    pub fn chord_drop_size(&self, group_id: &str) -> ChordOp<()> {
        match self {
            Backend::Redis(b) => Box::pin(b.chord_drop_size(group_id)),
            Backend::Memory(b) => {
                b.chords.drop_size(group_id);
                ready(Ok(()))
            }
            other => ready(Err(no_chords(other))),
        }
    }
}
