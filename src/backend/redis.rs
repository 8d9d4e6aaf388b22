//! The Redis result backend (`celery/backends/redis.py`): `celery-task-meta-<id>` written as
//! SETEX + PUBLISH on the same name (never over an existing SUCCESS), read by GET, awaited by
//! SUBSCRIBE (then GET once the subscription is confirmed, so nothing published in between is
//! missed). Group results live at `celery-taskset-meta-<id>`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use serde_json::{json, Value};

use crate::protocol::{ResultMeta, ResultTuple};
use crate::rt::{self, IoThread};
use crate::transport::redis::{frame_bytes, writer, BytesFrame, Connection, RedisError, RedisUrl, Script};

use super::chord::{ChordCount, ChordPart};

use super::error::BackendError;

fn lost(e: RedisError) -> BackendError {
    BackendError::ConnectionLost(e.to_string())
}

/// A Redis result store.
#[derive(Debug)]
pub struct RedisBackend {
    /// The server results are stored on.
    pub url: RedisUrl,
    prefix: String,
    expires: Option<Duration>,
}

impl RedisBackend {
    /// A store on `url`; keys start with `prefix`; results expire after `expires` (never if `None`).
    pub fn new(url: RedisUrl, prefix: String, expires: Option<Duration>) -> Arc<Self> {
        Arc::new(RedisBackend { url, prefix, expires })
    }

    /// `celery-task-meta-<id>` under the configured prefix.
    pub fn key(&self, task_id: &str) -> String {
        format!("{}celery-task-meta-{task_id}", self.prefix)
    }

    fn group_key(&self, group_id: &str) -> String {
        format!("{}celery-taskset-meta-{group_id}", self.prefix)
    }

    /// This shard's handle for storing results: its write batch, held from now on. On an
    /// executor only.
    pub(crate) fn on_shard(self: &Arc<Self>) -> ShardWrites {
        ShardWrites { batch: super::result_batch::batch(&self.url, self.ttl()), backend: self.clone() }
    }

    fn ttl(&self) -> u64 {
        self.expires.map_or(0, |d| d.as_secs())
    }

    /// Stores `meta` from an executor thread, in that shard's write batch (see [`Self::on_shard`]).
    pub fn store_local(
        self: &Arc<Self>,
        meta: &ResultMeta,
    ) -> impl Future<Output = Result<(), BackendError>> + 'static {
        self.on_shard().store(meta)
    }
    fn run<T: Send + 'static, F: Future<Output = T> + 'static>(
        &self,
        f: impl FnOnce(RedisUrl) -> F + Send + 'static,
    ) -> T {
        let url = self.url.clone();
        rt::block_on(IoThread::global().run(move || f(url)))
    }

    /// GETs and decodes the meta of `task_id`.
    pub fn get(&self, task_id: &str) -> Result<Option<ResultMeta>, BackendError> {
        let key = self.key(task_id);
        self.run(move |url| async move { get_meta(&writer(&url), &key).await })
    }

    /// GETs the meta of `task_id` on this executor's writer (see [`Backend::get_async`]).
    pub(crate) fn get_local(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<ResultMeta>, BackendError>> + 'static {
        let (key, url) = (self.key(task_id), self.url.clone());
        async move { get_meta(&writer(&url), &key).await }
    }

    /// Deletes the stored result.
    pub fn forget(&self, task_id: &str) -> Result<(), BackendError> {
        let key = self.key(task_id);
        self.run(move |url| async move { writer(&url).call(&[b"DEL", key.as_bytes()]).await.map(|_| ()).map_err(lost) })
    }

    /// Hands `tx` the meta once `task_id` is ready. Does not wait: the subscription is queued on
    /// the I/O executor, ahead of anything this thread queues there afterwards (the publish of
    /// the task, when called at send time as Celery's `on_task_call` does).
    pub fn register(&self, task_id: &str, tx: flume::Sender<ResultMeta>) {
        let (key, url) = (self.key(task_id), self.url.clone());
        drop(IoThread::global().run(move || async move { listener(&url).register(key, tx) }));
    }

    /// Drops the waiters of `task_id` nobody listens to any more, and the subscription with
    /// them when none is left.
    pub fn prune(&self, task_id: &str) {
        let (key, url) = (self.key(task_id), self.url.clone());
        drop(IoThread::global().run(move || async move { listener(&url).prune(&key) }));
    }

    /// `GroupResult.save()`: the group id and member ids as a result tuple.
    pub fn save_group(&self, group_id: &str, task_ids: &[String]) -> Result<(), BackendError> {
        let tuple = ResultTuple {
            id: group_id.to_owned(),
            parent: None,
            children: Some(task_ids.iter().map(ResultTuple::task).collect()),
        };
        let body = serde_json::to_vec(&json!({"result": tuple.to_value()})).expect("JSON");
        let key = self.group_key(group_id);
        let ttl = self.ttl();
        self.run(move |url| async move {
            super::result_batch::store_one(&url, ttl, key.as_bytes(), &body).await.map_err(lost)
        })
    }

    /// `GroupResult.restore()`: the member ids, if the group was saved.
    pub fn restore_group(&self, group_id: &str) -> Result<Option<Vec<String>>, BackendError> {
        let key = self.group_key(group_id);
        let raw = self.run(move |url| async move {
            let f = writer(&url).call(&[b"GET", key.as_bytes()]).await.map_err(lost)?;
            Ok::<_, BackendError>(frame_bytes(&f).map(<[u8]>::to_vec))
        })?;
        let Some(raw) = raw else { return Ok(None) };
        let v: Value = serde_json::from_slice(&raw).map_err(|e| BackendError::Corrupt(e.to_string()))?;
        let t =
            ResultTuple::from_value(&v["result"]).ok_or_else(|| BackendError::Corrupt("group result shape".into()))?;
        Ok(Some(t.children.unwrap_or_default().into_iter().map(|c| c.id).collect()))
    }
}

/// One shard's result writes to one Redis store: the shard's batch, which carries them on the
/// shard's writer.
pub(crate) struct ShardWrites {
    backend: Arc<RedisBackend>,
    batch: Rc<super::result_batch::Batch>,
}

impl ShardWrites {
    /// Stores `meta`; retries for up to a minute while Redis is unreachable or busy (`LOADING`
    /// after a restart, `BUSY` with a script running, `TRYAGAIN`, `MASTERDOWN`: what redis-py
    /// retries too), so a restart does not lose results. A refusal that retrying cannot cure
    /// (`OOM`, `READONLY`, …) is returned as what it is at once.
    pub(crate) fn store(&self, meta: &ResultMeta) -> impl Future<Output = Result<(), BackendError>> + 'static {
        let key = Bytes::from(self.backend.key(&meta.task_id));
        let body = Bytes::from(serde_json::to_vec(meta).expect("result metas are JSON values"));
        let (batch, url) = (self.batch.clone(), self.backend.url.clone());
        // Queued now, not when the future is first polled: the write joins the batch of the
        // shard's current run of tasks.
        let mut first = Some(batch.enqueue(key.clone(), body.clone()));
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut wait = Duration::from_millis(50);
            loop {
                let done = match first.take() {
                    Some(queued) => queued,
                    None => batch.enqueue(key.clone(), body.clone()),
                };
                let outcome = done.recv_async().await.unwrap_or_else(|_| {
                    Err(RedisError::ConnectionLost(format!("{}: the shard stopped", url.redacted())))
                });
                let why = match outcome {
                    Ok(()) => return Ok(()),
                    Err(RedisError::ConnectionLost(e)) => e,
                    Err(RedisError::Server(e)) if is_transient(&e) => e,
                    Err(RedisError::Server(e)) => return Err(BackendError::Refused(e)),
                    Err(e) => return Err(lost(e)),
                };
                if Instant::now() >= deadline {
                    return Err(BackendError::ConnectionLost(why));
                }
                tracing::debug!("storing {}: {why}; retrying in {wait:?}", String::from_utf8_lossy(&key));
                rt::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Server errors that pass by themselves: the data set is loading, a script is running, a
/// cluster slot is moving, the replica lost its master.
pub(super) fn is_transient(e: &str) -> bool {
    ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"].iter().any(|p| e.starts_with(p))
}

async fn get_meta(conn: &Connection, key: &str) -> Result<Option<ResultMeta>, BackendError> {
    let f = conn.call(&[b"GET", key.as_bytes()]).await.map_err(lost)?;
    match frame_bytes(&f) {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(raw).map(Some).map_err(|e| BackendError::Corrupt(format!("{key}: {e}"))),
    }
}

/// Result waiters of one Redis server on the I/O executor: one subscriber connection for all.
struct Listener {
    url: RedisUrl,
    sub: RefCell<Option<Connection>>,
    waiters: RefCell<HashMap<String, Vec<flume::Sender<ResultMeta>>>>,
    /// A subscribe-again after a refusal is scheduled.
    resubscribing: Cell<bool>,
}

thread_local! {
    static LISTENERS: RefCell<HashMap<RedisUrl, Rc<Listener>>> = RefCell::new(HashMap::new());
}

fn listener(url: &RedisUrl) -> Rc<Listener> {
    LISTENERS.with(|l| {
        l.borrow_mut()
            .entry(url.clone())
            .or_insert_with(|| {
                let lis = Rc::new(Listener {
                    url: url.clone(),
                    sub: RefCell::new(None),
                    waiters: RefCell::new(HashMap::new()),
                    resubscribing: Cell::new(false),
                });
                let weak: Weak<Listener> = Rc::downgrade(&lis);
                let conn = Connection::open_subscriber(url.clone(), "results", move |frame| {
                    if let Some(l) = weak.upgrade() {
                        l.on_push(frame);
                    }
                });
                let weak = Rc::downgrade(&lis);
                conn.on_connect(move |c| {
                    // After a reconnect: subscribe again to everything still awaited (the GET
                    // after each confirmation catches results stored while we were away).
                    if let Some(l) = weak.upgrade() {
                        for key in l.waiters.borrow().keys() {
                            c.send(&[b"SUBSCRIBE", key.as_bytes()]);
                        }
                    }
                });
                *lis.sub.borrow_mut() = Some(conn);
                lis
            })
            .clone()
    })
}

impl Listener {
    fn sub(&self) -> Connection {
        self.sub.borrow().clone().expect("set at creation")
    }

    fn register(self: &Rc<Self>, key: String, tx: flume::Sender<ResultMeta>) {
        let mut w = self.waiters.borrow_mut();
        match w.get_mut(&key) {
            Some(list) => list.push(tx),
            None => {
                self.sub().send(&[b"SUBSCRIBE", key.as_bytes()]);
                w.insert(key, vec![tx]);
            }
        }
    }

    fn prune(&self, key: &str) {
        let mut w = self.waiters.borrow_mut();
        if let Some(list) = w.get_mut(key) {
            list.retain(|tx| !tx.is_disconnected());
            if list.is_empty() {
                w.remove(key);
                self.sub().send(&[b"UNSUBSCRIBE", key.as_bytes()]);
            }
        }
    }

    fn on_push(self: &Rc<Self>, frame: BytesFrame) {
        if let BytesFrame::Error(e) = &frame {
            // A SUBSCRIBE refused while Redis is busy or loading: those waits would never hear
            // of their results. Subscribe everything awaited again a little later (a second
            // SUBSCRIBE of a key is harmless: one more confirmation, one more GET).
            if is_transient(e) && !self.resubscribing.replace(true) {
                tracing::debug!("result subscription refused ({e}); subscribing again");
                let me = self.clone();
                rt::spawn_local(async move {
                    rt::sleep(Duration::from_millis(100)).await;
                    me.resubscribing.set(false);
                    let sub = me.sub();
                    for key in me.waiters.borrow().keys() {
                        sub.send(&[b"SUBSCRIBE", key.as_bytes()]);
                    }
                });
            } else if !is_transient(e) {
                tracing::warn!("result subscription refused: {e}");
            }
            return;
        }
        let BytesFrame::Array(parts) = frame else { return };
        let kind = parts.first().and_then(frame_bytes).unwrap_or(b"");
        let channel = parts.get(1).and_then(frame_bytes).map(|c| String::from_utf8_lossy(c).into_owned());
        match (kind, channel) {
            (b"message", Some(key)) => {
                if let Some(meta) =
                    parts.get(2).and_then(frame_bytes).and_then(|d| serde_json::from_slice::<ResultMeta>(d).ok())
                {
                    self.deliver(&key, meta);
                }
            }
            (b"subscribe", Some(key)) => {
                // Subscribed: now read the key once, for results stored before this point.
                let me = self.clone();
                rt::spawn_local(async move {
                    if let Ok(Some(meta)) = get_meta(&writer(&me.url), &key).await {
                        me.deliver(&key, meta);
                    }
                });
            }
            _ => {}
        }
    }

    fn deliver(&self, key: &str, meta: ResultMeta) {
        if !meta.status.is_ready() {
            return;
        }
        if let Some(list) = self.waiters.borrow_mut().remove(key) {
            for tx in list {
                let _ = tx.try_send(meta.clone());
            }
            self.sub().send(&[b"UNSUBSCRIBE", key.as_bytes()]);
        }
    }
}

/// A server's refusal (a wrong type, a script error) as such; anything else as a lost connection.
fn refused_or_lost(e: RedisError) -> BackendError {
    match e {
        RedisError::Server(why) => BackendError::Refused(why),
        other => lost(other),
    }
}

static PART_RETURN: Script = Script::new(super::chord::PART_RETURN_LUA);
static CLEANUP: Script = Script::new(super::chord::CLEANUP_LUA);
static CLAIM_EXTEND: Script = Script::new(super::chord::CLAIM_EXTEND_LUA);

/// A chord's keys: `celery-taskset-meta-<group id>` and its `.j .t .s .d .c` companions.
struct ChordKeys {
    group: String,
}

impl ChordKeys {
    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.group)
    }
}

/// How long a `done` marker keeps late duplicates of a finished chord's parts off (Celery:
/// twice the claim, at least five minutes).
const DONE_SECS: u64 = 300;

/// Chord counting (see [`super::chord`]); each future runs on the executor that polls it, on
/// that thread's writer to the server (on a shard: after the shard's result writes).
impl RedisBackend {
    fn chord_keys(&self, group_id: &str) -> ChordKeys {
        ChordKeys { group: self.group_key(group_id) }
    }

    /// `set_chord_size`: a new run of the chord (its `done` marker dropped) waiting for `size`
    /// results.
    pub(crate) fn set_chord_size(
        self: &Arc<Self>,
        group_id: &str,
        size: u64,
    ) -> impl Future<Output = Result<(), BackendError>> + 'static {
        let (k, url, ttl) = (self.chord_keys(group_id), self.url.clone(), self.ttl());
        async move {
            let conn = writer(&url);
            let (c, s, n) = (k.key(".c"), k.key(".s"), size.to_string());
            conn.call(&[b"DEL", c.as_bytes()]).await.map_err(refused_or_lost)?;
            let secs = ttl.to_string();
            let mut set: Vec<&[u8]> = vec![b"SET", s.as_bytes(), n.as_bytes()];
            if ttl > 0 {
                set.extend([&b"EX"[..], secs.as_bytes()]);
            }
            conn.call(&set).await.map(|_| ()).map_err(refused_or_lost)
        }
    }

    /// `on_chord_part_return`'s count: records `part` at `index`; when it completes the chord
    /// and this call took the claim, the header's outcomes in order.
    pub(crate) fn chord_part_return(
        self: &Arc<Self>,
        group_id: &str,
        index: Option<i64>,
        part: ChordPart,
    ) -> impl Future<Output = Result<ChordCount, BackendError>> + 'static {
        let (k, url, ttl) = (self.chord_keys(group_id), self.url.clone(), self.ttl());
        async move {
            let conn = writer(&url);
            let keys = [k.key(".j"), k.key(".t"), k.key(".s"), k.key(".d"), k.group.clone(), k.key(".c")];
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let score = index.map_or_else(|| "+inf".to_owned(), |i| i.to_string());
            let token = uuid::Uuid::new_v4().simple().to_string();
            let (ttl, claim) = (ttl.to_string(), super::chord::CLAIM_SECS.to_string());
            let record = part.encode();
            let args: [&[u8]; 8] = [
                part.task_id.as_bytes(),
                &record,
                b"1",
                score.as_bytes(),
                ttl.as_bytes(),
                ttl.as_bytes(),
                claim.as_bytes(),
                token.as_bytes(),
            ];
            let reply = PART_RETURN.call(&conn, &keys, &args).await.map_err(refused_or_lost)?;
            let BytesFrame::Array(r) = reply else {
                return Err(BackendError::Corrupt(format!("chord {}: script reply {reply:?}", k.group)));
            };
            let claimed = matches!(r.get(3), Some(BytesFrame::Integer(1)));
            if !claimed {
                let number = |f: Option<&BytesFrame>| match f {
                    Some(BytesFrame::Integer(i)) => Some(*i),
                    Some(f) => frame_bytes(f).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
                    None => None,
                };
                let (ready, diff, size) = (number(r.first()), number(r.get(1)).unwrap_or(0), number(r.get(2)));
                let complete = size.is_some_and(|n| ready == Some(n + diff));
                return Ok(if complete { ChordCount::Held } else { ChordCount::Counted });
            }
            let j = k.key(".j");
            let all = conn.call(&[b"ZRANGE", j.as_bytes(), b"0", b"-1"]).await.map_err(refused_or_lost)?;
            let BytesFrame::Array(items) = all else {
                return Err(BackendError::Corrupt(format!("{j}: ZRANGE reply {all:?}")));
            };
            let parts = items
                .iter()
                .map(|f| {
                    frame_bytes(f).and_then(ChordPart::decode).ok_or_else(|| {
                        BackendError::Corrupt(format!("{j}: a record that is not [1, id, state, result]"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ChordCount::Complete { parts, token })
        }
    }

    /// Runs a claim script (`script`) with the chord's keys of `suffixes`, the claim `token` and
    /// `secs`; whether it answered 1 (the token held).
    fn claim_script(
        self: &Arc<Self>,
        script: &'static Script,
        group_id: &str,
        suffixes: &'static [&'static str],
        token: &str,
        secs: u64,
    ) -> impl Future<Output = Result<bool, BackendError>> + 'static {
        let (k, url, token) = (self.chord_keys(group_id), self.url.clone(), token.to_owned());
        async move {
            let keys: Vec<String> = suffixes.iter().map(|s| k.key(s)).collect();
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let secs = secs.to_string();
            let r = script
                .call(&writer(&url), &keys, &[token.as_bytes(), secs.as_bytes()])
                .await
                .map_err(refused_or_lost)?;
            Ok(matches!(r, BytesFrame::Integer(1)))
        }
    }

    /// Extends the dispatch claim before the body is sent; `false`: another worker holds it.
    pub(crate) fn chord_claim_extend(
        self: &Arc<Self>,
        group_id: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + 'static {
        self.claim_script(&CLAIM_EXTEND, group_id, &[".c", ".s"], token, 2 * super::chord::CLAIM_SECS)
    }

    /// Drops the chord's keys after its body was sent, leaving the `done` marker.
    pub(crate) fn chord_cleanup(
        self: &Arc<Self>,
        group_id: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + 'static {
        self.claim_script(&CLEANUP, group_id, &[".c", ".j", ".t", ".s", ".d"], token, DONE_SECS)
    }

    /// Drops the chord size after a failed chord, so a late copy of a part does not fail it again.
    pub(crate) fn chord_drop_size(
        self: &Arc<Self>,
        group_id: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + 'static {
        let (k, url) = (self.chord_keys(group_id), self.url.clone());
        async move {
            let s = k.key(".s");
            writer(&url).call(&[b"DEL", s.as_bytes()]).await.map(|_| ()).map_err(refused_or_lost)
        }
    }
}
