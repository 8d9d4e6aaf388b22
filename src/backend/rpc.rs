//! The rpc:// result backend (`celery/backends/rpc.py`): results travel as messages, not stored
//! anywhere. A worker publishes each state of a task (STARTED, RETRY, PROGRESS, the outcome) to
//! the default exchange with the request's `reply_to` as routing key and its `correlation_id`;
//! the client that sent it consumes its own reply queue (its oid, which every task message it
//! sends names as `reply_to`) and keeps the latest state of each task it hears of. As in Celery
//! there are no group results and nothing outlives the client: another process asking for a task
//! id sees PENDING.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::AmqpUrl;
use crate::protocol::ResultMeta;
use crate::transport::amqp::{publish_reply, ReplyQueue};

use super::error::BackendError;

/// Ready results kept for tasks nobody waits on yet (Celery buffers such out-of-band replies
/// too); past this the oldest go.
const KEEP_READY: usize = 65_536;

#[derive(Default)]
struct Replies {
    latest: HashMap<String, ResultMeta>,
    ready_order: VecDeque<String>,
    waiters: HashMap<String, Vec<flume::Sender<ResultMeta>>>,
}

impl Replies {
    fn on_reply(&mut self, meta: ResultMeta) {
        let id = meta.task_id.clone();
        if meta.status.is_ready() {
            for tx in self.waiters.remove(&id).unwrap_or_default() {
                let _ = tx.try_send(meta.clone());
            }
            self.ready_order.push_back(id.clone());
            while self.ready_order.len() > KEEP_READY {
                if let Some(old) = self.ready_order.pop_front() {
                    self.latest.remove(&old);
                }
            }
        }
        self.latest.insert(id, meta);
    }
}

/// An rpc:// result backend on the AMQP broker at `url`.
pub struct RpcBackend {
    url: AmqpUrl,
    oid: String,
    expires: Option<Duration>,
    persistent: bool,
    replies: Arc<Mutex<Replies>>,
    queue: OnceLock<ReplyQueue>,
}

impl std::fmt::Debug for RpcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcBackend({:?}, reply queue {})", self.url, self.oid)
    }
}

impl RpcBackend {
    /// A backend replying over `url`; this process's reply queue expires `expires` after its
    /// last consumer left (`result_expires`), results are sent persistent when `persistent`
    /// (`result_persistent`).
    pub fn new(url: AmqpUrl, expires: Option<Duration>, persistent: bool) -> Arc<Self> {
        Arc::new(RpcBackend {
            url,
            oid: uuid::Uuid::new_v4().to_string(),
            expires,
            persistent,
            replies: Arc::default(),
            queue: OnceLock::new(),
        })
    }

    /// This process's reply queue: the `reply_to` of every task message it sends.
    pub fn reply_queue(&self) -> &str {
        &self.oid
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Replies> {
        self.replies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts consuming the reply queue (once). From outside the runtime.
    fn consume(&self) {
        self.queue.get_or_init(|| {
            let replies = self.replies.clone();
            ReplyQueue::start(&self.url, &self.oid, self.expires, move |id, content_type, body| {
                if !content_type.contains("json") {
                    tracing::error!("rpc result for {id}: content type {content_type:?} is not json; dropped");
                    return;
                }
                match serde_json::from_slice::<ResultMeta>(&body) {
                    Ok(meta) => replies.lock().unwrap_or_else(|p| p.into_inner()).on_reply(meta),
                    Err(e) => tracing::error!("rpc result for {id} does not read as a result: {e}; dropped"),
                }
            })
        });
    }

    /// Publishes `meta` to the queue the request named, from a worker shard; a meta without a
    /// destination (the request named no `reply_to`) is not sent, as in Celery.
    pub(crate) fn store(&self, meta: &ResultMeta) -> impl Future<Output = Result<(), BackendError>> + 'static {
        let send = meta.destination.as_ref().map(|(reply_to, correlation_id)| {
            let body = serde_json::to_vec(meta).expect("result metas are JSON values");
            publish_reply(&self.url, reply_to, correlation_id, "application/json", &body, self.persistent)
        });
        async move {
            match send {
                Some(s) => s.await.map_err(|e| BackendError::ConnectionLost(e.to_string())),
                None => Ok(()),
            }
        }
    }

    /// The latest state heard of `task_id`, if any.
    pub fn get(&self, task_id: &str) -> Option<ResultMeta> {
        self.consume();
        self.lock().latest.get(task_id).cloned()
    }

    /// Hands `tx` the meta once `task_id` is ready.
    pub fn register(&self, task_id: &str, tx: flume::Sender<ResultMeta>) {
        self.consume();
        let mut r = self.lock();
        match r.latest.get(task_id) {
            Some(m) if m.status.is_ready() => {
                let _ = tx.try_send(m.clone());
            }
            _ => r.waiters.entry(task_id.to_owned()).or_default().push(tx),
        }
    }

    /// Drops the waiters of `task_id` nobody listens to any more.
    pub fn prune(&self, task_id: &str) {
        let mut r = self.lock();
        if let Some(w) = r.waiters.get_mut(task_id) {
            w.retain(|tx| !tx.is_disconnected());
            if w.is_empty() {
                r.waiters.remove(task_id);
            }
        }
    }

    /// Forgets what was heard of `task_id`.
    pub fn forget(&self, task_id: &str) {
        self.lock().latest.remove(task_id);
    }
}
