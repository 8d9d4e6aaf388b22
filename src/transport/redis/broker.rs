//! kombu's Redis transport: publish (LPUSH of the JSON envelope), consume (BLMPOP over the
//! priority lists in kombu's order, up to the prefetch room per round trip), the unacked
//! bookkeeping (`unacked` hash, `unacked_index` zset), acks, requeues, and the visibility-timeout
//! restore under `unacked_mutex`.

use std::cell::Cell;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::Value;

use crate::protocol::{DeliveryInfo, Envelope, Headers, TaskMessage};
use crate::rt::{self, IoThread};
use crate::transport::delivery::{Delivery, DeliveryKey};
use crate::transport::error::TransportError;
use crate::transport::route::Route;

use super::blocking::Pool;
use super::connection::frame_bytes;
use super::owner::{mark_redelivered, Owner, Settlement};
use super::script::Script;
use redis_protocol::resp2::types::BytesFrame;

use super::{writer, Connection, Keys, RedisError, RedisUrl, TransportOptions};

/// Takes the payload of one unacked tag atomically (for the visibility restore).
const TAKE_LUA: &str = "local p = redis.call('HGET', KEYS[1], ARGV[1]) if not p then return false end \
    redis.call('HDEL', KEYS[1], ARGV[1]) redis.call('ZREM', KEYS[2], ARGV[1]) return p";

/// Pops up to `ARGV[1]` messages from the first non-empty list (kombu's order) and stashes them
/// in `unacked`/`unacked_index` in the same step, so a popped message is never in neither place:
/// a worker killed at any moment leaves each message in its list or in `unacked`, for the
/// visibility restore. One `HSET` and one `ZADD` carry the batch. The stash is kombu's
/// `[envelope, exchange, routing_key]` with the empty exchange and the queue the message was
/// taken from, so any kombu restores it to that queue. Each entry's tag is `ARGV[3]` (unique to
/// this pop) and the item's position: the tag only pairs an `unacked` field with its
/// `unacked_index` member and names the ack, and nobody else looks a delivery up by it (kombu's
/// restore reads both by what it finds). Finding the envelope's own `delivery_tag` in Lua cost
/// Redis about a µs per message. An item that is not a JSON object is not stashed (the consumer
/// drops it); the reply says which were, by position.
/// KEYS: unacked, unacked_index, the lists; ARGV: count, score, tag prefix, each list's queue.
static POP_STASH: Script = Script::new(
    r#"local n = tonumber(ARGV[1])
for i = 3, #KEYS do
  local items = redis.call('RPOP', KEYS[i], n)
  if items then
    local q = cjson.encode(ARGV[i + 1])
    local h, z, skipped = {}, {}, {}
    for j = 1, #items do
      local item = items[j]
      if string.byte(item, 1) == 123 then
        local tag = ARGV[3] .. j
        h[#h + 1] = tag
        h[#h + 1] = '[' .. item .. ',"",' .. q .. ']'
        z[#z + 1] = ARGV[2]
        z[#z + 1] = tag
      else
        skipped[#skipped + 1] = j
      end
    end
    if #h > 0 then
      redis.call('HSET', KEYS[1], unpack(h))
      redis.call('ZADD', KEYS[2], unpack(z))
    end
    return {KEYS[i], items, skipped}
  end
end
return false"#,
);

/// How long an idle shard's `BLMPOP` blocks. A warm shutdown must read the reply of a pop in
/// flight (it may hold a message), so this is also how long a shutdown can wait for it: with
/// kombu's 1 s, every drain measured up to a second of shutdown that was no work. An idle shard
/// costs Redis four cheap commands a second for it.
const BLOCK_SECONDS: &str = "0.25";

/// The most messages one pop takes (Lua's `unpack` has a stack limit of a few thousand values).
const POP_MAX: usize = 1000;

/// redis-py's lock release: delete only if we still hold it.
const UNLOCK_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn lost(e: RedisError) -> TransportError {
    TransportError::ConnectionLost(e.to_string())
}

/// A Redis broker: shared by clients and shards (`Send + Sync`).
#[derive(Debug)]
pub struct RedisBroker {
    /// The server.
    pub url: RedisUrl,
    /// kombu's key names under the transport options.
    pub keys: Keys,
    declared: Mutex<HashSet<String>>,
    /// Connections for publishes from threads outside the runtime.
    blocking: Pool,
}

impl RedisBroker {
    /// A broker on `url` with kombu's `broker_transport_options`.
    pub fn new(url: RedisUrl, opts: TransportOptions) -> Arc<Self> {
        Arc::new(RedisBroker {
            url,
            keys: Keys::new(opts),
            declared: Mutex::new(HashSet::new()),
            blocking: Pool::default(),
        })
    }

    /// The envelope kombu would push for `msg` published along `route`.
    pub fn envelope(route: &Route, msg: &TaskMessage) -> Vec<u8> {
        let info = DeliveryInfo {
            exchange: route.exchange.clone(),
            routing_key: route.routing_key.clone(),
            redelivered: false,
        };
        Envelope::from_task(msg, info, uuid::Uuid::new_v4().to_string()).encode()
    }

    /// Registers `queue`'s binding the way Celery declares a queue (`Queue(q, Exchange(q), q)`),
    /// once per process, so Python tooling routes to it.
    fn declare(&self, conn: &Connection, queue: &str) {
        let fresh = self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_owned());
        if fresh {
            for [cmd, key, member] in self.binding_commands(queue) {
                conn.send(&[&cmd, &key, &member]);
            }
        }
    }

    /// The SADDs that register `queue`'s binding (kombu 5.7 writes the permanent set too).
    fn binding_commands(&self, queue: &str) -> [[Vec<u8>; 3]; 2] {
        let member = self.keys.binding_member(queue, queue).into_bytes();
        [
            [b"SADD".to_vec(), self.keys.binding_key(queue).into_bytes(), member.clone()],
            [b"SADD".to_vec(), self.keys.binding_permanent_key(queue).into_bytes(), member],
        ]
    }

    /// LPUSHes an envelope from an executor thread and waits for Redis to take it.
    async fn push(self: Arc<Self>, queue: String, priority: u8, envelope: Vec<u8>) -> Result<(), TransportError> {
        let conn = writer(&self.url);
        self.declare(&conn, &queue);
        let key = self.keys.queue_key(&queue, priority);
        conn.call(&[b"LPUSH", key.as_bytes(), &envelope]).await.map(|_| ()).map_err(lost)
    }

    /// Publishes `msg` along `route` from any thread; waits until Redis has it.
    pub fn publish(self: &Arc<Self>, route: &Route, msg: &TaskMessage) -> Result<(), TransportError> {
        let (env, p) = (Self::envelope(route, msg), msg.properties.priority);
        let queue = route.target_queue();
        if rt::on_executor() {
            // On a shard (a task sending a subtask): queue it on the shard's pipelined writer.
            let (b, q) = (self.clone(), queue.to_owned());
            rt::spawn_local(async move {
                if let Err(e) = b.push(q, p, env).await {
                    tracing::error!("publishing to redis failed: {e}");
                }
            });
            return Ok(());
        }
        // Off the runtime: LPUSH on a pooled blocking connection and wait for the reply on this
        // thread — no hand-off to the I/O thread and back.
        let fresh = !self.declared.lock().unwrap_or_else(|p| p.into_inner()).contains(queue);
        let bindings = if fresh { self.binding_commands(queue).to_vec() } else { Vec::new() };
        let key = self.keys.queue_key(queue, p);
        let mut cmds: Vec<[&[u8]; 3]> = bindings.iter().map(|[c, k, m]| [&c[..], &k[..], &m[..]]).collect();
        cmds.push([b"LPUSH", key.as_bytes(), &env]);
        let cmds: Vec<&[&[u8]]> = cmds.iter().map(|c| &c[..]).collect();
        self.blocking.pipeline(&self.url, &cmds).map_err(lost)?;
        if fresh {
            self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_owned());
        }
        Ok(())
    }

    /// Publishes many messages along `route` from any thread: all LPUSHes are queued on one
    /// connection before the first reply is awaited, so they pipeline.
    pub fn publish_batch(self: &Arc<Self>, route: &Route, msgs: &[TaskMessage]) -> Result<(), TransportError> {
        let items: Vec<(u8, Vec<u8>)> =
            msgs.iter().map(|m| (m.properties.priority, Self::envelope(route, m))).collect();
        let (b, q) = (self.clone(), route.target_queue().to_owned());
        let job = move || async move {
            let conn = writer(&b.url);
            b.declare(&conn, &q);
            let replies: Vec<_> =
                items.iter().map(|(p, env)| conn.call(&[b"LPUSH", b.keys.queue_key(&q, *p).as_bytes(), env])).collect();
            for r in replies {
                r.await.map_err(lost)?;
            }
            Ok(())
        };
        if rt::on_executor() {
            return Err(TransportError::Server("publish_batch blocks: call it from outside a shard".into()));
        }
        rt::block_on(IoThread::global().run(job))
    }

    /// Publishes from any executor without blocking a thread.
    pub fn publish_async(
        self: &Arc<Self>,
        route: &Route,
        msg: &TaskMessage,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static {
        let env = Self::envelope(route, msg);
        let (b, q, p) = (self.clone(), route.target_queue().to_owned(), msg.properties.priority);
        IoThread::global().run(move || b.push(q, p, env))
    }

    /// Messages waiting in `queue` (all priorities).
    pub fn queue_len(self: &Arc<Self>, queue: &str) -> Result<usize, TransportError> {
        self.count_lists(queue, false)
    }

    /// Deletes the lists of `queue` (every priority), as kombu's `_purge`; returns how many
    /// messages they held. Unacked messages stay where they are.
    pub fn purge(self: &Arc<Self>, queue: &str) -> Result<usize, TransportError> {
        self.count_lists(queue, true)
    }

    /// The length of each priority list of `queue`, summed; with `delete`, each list is deleted
    /// in the same MULTI as its count, so a message pushed in between is not lost uncounted.
    fn count_lists(self: &Arc<Self>, queue: &str, delete: bool) -> Result<usize, TransportError> {
        let b = self.clone();
        let keys = b.keys.pop_order(&[queue.to_owned()]);
        rt::block_on(IoThread::global().run(move || async move {
            let conn = writer(&b.url);
            let mut total = 0;
            for k in keys {
                let n = if delete {
                    conn.send(&[b"MULTI"]);
                    conn.send(&[b"LLEN", k.as_bytes()]);
                    conn.send(&[b"DEL", k.as_bytes()]);
                    match conn.call(&[b"EXEC"]).await.map_err(lost)? {
                        BytesFrame::Array(r) => r.into_iter().next(),
                        _ => None,
                    }
                } else {
                    Some(conn.call(&[b"LLEN", k.as_bytes()]).await.map_err(lost)?)
                };
                if let Some(BytesFrame::Integer(n)) = n {
                    total += n as usize;
                }
            }
            Ok(total)
        }))
    }

    /// Publishes `envelope` on a fanout exchange (kombu: `PUBLISH /<db>.<exchange>[/<rk>]`).
    /// Best effort, as in kombu: nobody subscribed means nobody receives it. From any thread.
    pub fn publish_fanout(
        self: &Arc<Self>,
        exchange: &str,
        routing_key: &str,
        envelope: Vec<u8>,
    ) -> Result<(), TransportError> {
        let channel = self.keys.fanout_channel(self.url.db, exchange, routing_key);
        let url = self.url.clone();
        let job = move || async move {
            writer(&url).call(&[b"PUBLISH", channel.as_bytes(), &envelope]).await.map(|_| ()).map_err(lost)
        };
        rt::run_here_or_wait(job, |e| tracing::warn!("fanout publish failed: {e}"))
    }

    /// Publishes a kombu envelope to a direct exchange as kombu's Redis transport routes it: to
    /// every queue whose binding (`_kombu.binding.<exchange>`) has `routing_key` (the remote
    /// control replies to `reply.celery.pidbox`, bound by each client to its own queue).
    pub fn publish_direct(
        self: &Arc<Self>,
        exchange: &str,
        routing_key: &str,
        envelope: Vec<u8>,
    ) -> Result<(), TransportError> {
        let (b, set, rk) = (self.clone(), self.keys.binding_key(exchange), routing_key.to_owned());
        let job = move || async move {
            let conn = writer(&b.url);
            let members = conn.call(&[b"SMEMBERS", set.as_bytes()]).await.map_err(lost)?;
            let BytesFrame::Array(members) = members else { return Ok(()) };
            let sep = format!("{0}{0}", b.keys.opts.sep);
            for m in members.iter().filter_map(|f| frame_bytes(f)) {
                let m = String::from_utf8_lossy(m);
                if let Some((key, queue)) = m.split_once(&sep) {
                    if key == rk {
                        let q = b.keys.queue_key(queue, 0);
                        conn.call(&[b"LPUSH", q.as_bytes(), &envelope]).await.map_err(lost)?;
                    }
                }
            }
            Ok(())
        };
        rt::run_here_or_wait(job, |e| tracing::warn!("reply publish failed: {e}"))
    }

    /// Subscribes to a fanout exchange the way kombu binds a queue to it: `PSUBSCRIBE` of
    /// `/<db>.<exchange>` (empty `routing_pattern`) or `/<db>.<exchange>/<pattern>` with AMQP's
    /// `#` as `*`. Returns once Redis confirmed the subscription; it survives reconnects and ends
    /// when the returned handle is dropped.
    pub fn subscribe_fanout(self: &Arc<Self>, exchange: &str, routing_pattern: &str) -> FanoutSubscription {
        let pattern = self.keys.fanout_channel(self.url.db, exchange, &routing_pattern.replace('#', "*"));
        let (tx, rx) = flume::unbounded();
        let url = self.url.clone();
        let id = rt::block_on(IoThread::global().run(move || async move {
            let (confirmed_tx, confirmed_rx) = flume::bounded::<()>(1);
            let conn = Connection::open_subscriber(url, "fanout", move |frame| {
                let BytesFrame::Array(parts) = frame else { return };
                match parts.first().and_then(frame_bytes) {
                    Some(b"pmessage") if parts.len() == 4 => {
                        let channel =
                            frame_bytes(&parts[2]).map(|c| String::from_utf8_lossy(c).into_owned()).unwrap_or_default();
                        if let Some(data) = frame_bytes(&parts[3]) {
                            let _ = tx.send((channel, data.to_vec()));
                        }
                    }
                    Some(b"psubscribe") => {
                        let _ = confirmed_tx.try_send(());
                    }
                    _ => {}
                }
            });
            let p = pattern.clone();
            conn.on_connect(move |c| c.send(&[b"PSUBSCRIBE", p.as_bytes()]));
            let _ = confirmed_rx.recv_async().await;
            SUBSCRIPTIONS.with(|s| {
                let mut s = s.borrow_mut();
                let id = s.keys().max().map_or(1, |m| m + 1);
                s.insert(id, conn);
                id
            })
        }));
        FanoutSubscription { rx, id }
    }

    /// Binds `queue` to the direct `exchange` with `routing_key` and reads it until dropped
    /// (a remote-control client's reply queue).
    pub fn subscribe_queue(&self, exchange: &str, routing_key: &str, queue: &str) -> super::BoundQueue {
        super::BoundQueue::start(&self.url, &self.keys, exchange, routing_key, queue)
    }

    /// Opens a consumer of `queues` on the current shard: its own connection for blocking pops,
    /// and the shard's writer, which it holds from now on, for stashes, acks and restores.
    pub fn consumer(self: &Arc<Self>, queues: &[String]) -> RedisConsumer {
        let writer = writer(&self.url);
        let vt = self.keys.opts.visibility();
        RedisConsumer {
            broker: self.clone(),
            fetch: Connection::open(self.url.clone(), "fetch"),
            owner: Owner::start(writer.clone(), self.keys.clone()),
            writer,
            queues: queues.to_vec(),
            pending: None,
            lost_pop: None,
            backlogged: true,
            pops: 0,
            last_restore: Instant::now() - vt,
            restore_every: (vt / 4).clamp(Duration::from_millis(250), Duration::from_secs(30)),
            token: uuid::Uuid::new_v4().to_string(),
            restoring: Rc::new(Cell::new(false)),
            declared: false,
        }
    }
}

thread_local! {
    /// Fanout subscriber connections owned by the I/O executor, by subscription id.
    static SUBSCRIPTIONS: std::cell::RefCell<std::collections::HashMap<u64, Connection>> = Default::default();
}

/// A live fanout subscription (see [`RedisBroker::subscribe_fanout`]).
pub struct FanoutSubscription {
    rx: flume::Receiver<(String, Vec<u8>)>,
    id: u64,
}

impl FanoutSubscription {
    /// The next `(channel, envelope)`, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next `(channel, envelope)`, from any executor.
    pub async fn recv_async(&self) -> Option<(String, Vec<u8>)> {
        self.rx.recv_async().await.ok()
    }
}

impl Drop for FanoutSubscription {
    fn drop(&mut self) {
        let id = self.id;
        // The job is queued at once; nobody needs to wait for it.
        drop(IoThread::global().run(move || async move {
            if let Some(c) = SUBSCRIPTIONS.with(|s| s.borrow_mut().remove(&id)) {
                c.close();
            }
        }));
    }
}

/// What the pop script stashed: item `j` (from 1) under `prefix` and `j`, except the positions
/// it skipped (not JSON objects).
struct Stashed {
    prefix: String,
    skipped: Vec<i64>,
}

type Pending = Pin<Box<dyn Future<Output = Result<BytesFrame, RedisError>>>>;

/// Which pop is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pop {
    /// The pop-and-stash script, with the tag prefix it was given: its messages are in
    /// `unacked` already.
    Stashing(String),
    /// `BLMPOP … COUNT 1`, waiting for a message while every list is empty: its message is
    /// stashed by the next command on the owner's writer (the one window left, as in kombu's
    /// `BRPOP`, one message wide and only when the worker was idle).
    Blocking,
}

/// One shard's Redis consumer. Cancel-safe: a blocking pop in flight survives a dropped
/// `fetch` call and is picked up by the next one, so no popped message is ever dropped.
pub struct RedisConsumer {
    broker: Arc<RedisBroker>,
    fetch: Connection,
    /// Where this consumer's deliveries are settled, wherever they run.
    owner: Arc<Owner>,
    /// The shard's pipelined writer: stashes, acks, declares and restores.
    writer: Connection,
    queues: Vec<String>,
    pending: Option<(Pop, Pending)>,
    /// The last pop found messages: pop again without blocking.
    backlogged: bool,
    /// Pops sent so far: with `token`, a prefix unique to each pop for the stash's tags.
    pops: u64,
    /// A pop script whose reply the connection lost (its tag prefix and count): it may have
    /// stashed messages nobody received; the next fetch reads them back by their tags.
    lost_pop: Option<(String, usize)>,
    last_restore: Instant,
    restore_every: Duration,
    token: String,
    restoring: Rc<Cell<bool>>,
    declared: bool,
}

impl RedisConsumer {
    /// Waits up to `BLOCK_SECONDS` for messages; returns up to `max` (empty on timeout).
    pub async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, TransportError> {
        if !self.declared {
            for q in &self.queues {
                self.broker.declare(&self.writer, q);
            }
            self.declared = true;
        }
        if self.last_restore.elapsed() >= self.restore_every && !self.restoring.get() {
            // A task of its own: a dropped fetch() must not abandon a restore halfway (and
            // leave the mutex held).
            self.last_restore = Instant::now();
            self.restoring.set(true);
            let (broker, token, flag) = (self.broker.clone(), self.token.clone(), self.restoring.clone());
            let conn = self.writer.clone();
            rt::spawn_local(async move {
                if let Err(e) = restore_visible(&broker, &conn, &token).await {
                    tracing::debug!("visibility restore skipped: {e}");
                }
                flag.set(false);
            });
        }
        if self.pending.is_none() {
            if let Some(found) = self.recover_lost_pop().await? {
                return Ok(found);
            }
            if self.queues.is_empty() {
                // Every queue cancelled: nothing to pop until one is added, but the visibility
                // restore above still runs on time.
                rt::sleep(self.restore_every).await;
                return Ok(Vec::new());
            }
            self.pending = Some(self.pop(max));
        }
        let (_, pending) = self.pending.as_mut().expect("set above");
        let reply = pending.await;
        let (kind, _) = self.pending.take().expect("awaited above");
        if let (Pop::Stashing(prefix), Err(RedisError::ConnectionLost(_))) = (&kind, &reply) {
            self.lost_pop = Some((prefix.clone(), max.clamp(1, POP_MAX)));
        }
        let what = match kind {
            Pop::Stashing(_) => "the pop script",
            Pop::Blocking => "BLMPOP",
        };
        let shape = || TransportError::ConnectionLost(format!("{what}: unexpected reply shape"));
        match reply {
            Ok(BytesFrame::Null) => {
                self.backlogged = false;
                Ok(Vec::new())
            }
            Ok(BytesFrame::Array(mut parts)) if parts.len() == 2 || parts.len() == 3 => {
                let skipped = if parts.len() == 3 { parts.pop() } else { None };
                let items = parts.pop();
                let key = parts.pop();
                let stash = match (kind, skipped) {
                    (Pop::Stashing(prefix), Some(BytesFrame::Array(s))) => {
                        let skipped =
                            s.iter().filter_map(|f| if let BytesFrame::Integer(j) = f { Some(*j) } else { None });
                        Some(Stashed { prefix, skipped: skipped.collect() })
                    }
                    (Pop::Blocking, None) => None,
                    _ => return Err(shape()),
                };
                match (key.as_ref().and_then(frame_bytes), items) {
                    (Some(key), Some(BytesFrame::Array(items))) => {
                        self.backlogged = true;
                        Ok(self.accept(&String::from_utf8_lossy(key), items, stash))
                    }
                    _ => Err(shape()),
                }
            }
            Ok(other) => Err(TransportError::ConnectionLost(format!("{what}: unexpected reply {other:?}"))),
            Err(RedisError::Server(e)) => Err(TransportError::Server(e)),
            Err(e) => Err(lost(e)),
        }
    }

    /// After a pop script's reply was lost: the messages it stashed (if it ran) are in
    /// `unacked` under its tags, where only the visibility restore would find them, an hour
    /// later by default. They are read back by those tags and delivered here, still stashed
    /// under them, byte for byte and in their order. `None` when there was nothing to look for
    /// or nothing was found; the question stays open until Redis answers it.
    async fn recover_lost_pop(&mut self) -> Result<Option<Vec<Delivery>>, TransportError> {
        let Some((prefix, n)) = self.lost_pop.clone() else { return Ok(None) };
        let unacked = self.broker.keys.unacked();
        let tags: Vec<String> = (1..=n).map(|j| format!("{prefix}{j}")).collect();
        let mut args: Vec<&[u8]> = vec![b"HMGET", unacked.as_bytes()];
        args.extend(tags.iter().map(|t| t.as_bytes()));
        let reply = self.writer.call(&args).await.map_err(lost)?;
        self.lost_pop = None;
        let BytesFrame::Array(found) = reply else { return Ok(None) };
        let (mut items, mut skipped, mut queue) = (Vec::new(), Vec::new(), None);
        for (j, f) in (1i64..).zip(found) {
            // The stash is `[envelope, "", queue]`, the envelope as popped.
            let parsed =
                frame_bytes(&f).and_then(|b| serde_json::from_slice::<(Box<RawValue>, String, String)>(b).ok());
            match parsed {
                Some((env, _, q)) => {
                    items.push(BytesFrame::BulkString(env.get().as_bytes().to_vec().into()));
                    queue.get_or_insert(q);
                }
                None => {
                    items.push(BytesFrame::Null);
                    skipped.push(j);
                }
            }
        }
        let Some(queue) = queue else { return Ok(None) };
        tracing::warn!("a pop's reply was lost with the connection; its messages are delivered from the stash");
        let key = self.broker.keys.queue_key(&queue, 0);
        let out = self.accept(&key, items, Some(Stashed { prefix, skipped }));
        Ok((!out.is_empty()).then_some(out))
    }

    /// Consumes `queue` too, from the next pop on (a blocking pop in flight keeps its keys
    /// until its short block ends); its binding is declared first, as kombu's.
    pub fn consume(&mut self, queue: &str) {
        if !self.queues.iter().any(|q| q == queue) {
            self.queues.push(queue.to_owned());
            self.broker.declare(&self.writer, queue);
        }
    }

    /// Stops consuming `queue` from the next pop on.
    pub fn cancel(&mut self, queue: &str) {
        self.queues.retain(|q| q != queue);
    }

    /// Sends the next pop: the pop-and-stash script while messages are waiting, else a blocking
    /// pop of one.
    fn pop(&mut self, max: usize) -> (Pop, Pending) {
        let keys = self.broker.keys.pop_order(&self.queues);
        if self.backlogged {
            let k = &self.broker.keys;
            let mut script_keys: Vec<Vec<u8>> = vec![k.unacked().into_bytes(), k.unacked_index().into_bytes()];
            script_keys.extend(keys.iter().map(|key| key.clone().into_bytes()));
            self.pops += 1;
            let prefix = format!("{}.{}.", self.token, self.pops);
            let mut args: Vec<Vec<u8>> = vec![
                max.clamp(1, POP_MAX).to_string().into_bytes(),
                index_score().into_bytes(),
                prefix.clone().into_bytes(),
            ];
            args.extend(keys.iter().map(|key| k.queue_of(key).into_bytes()));
            let conn = self.fetch.clone();
            return (
                Pop::Stashing(prefix),
                Box::pin(async move {
                    let keys: Vec<&[u8]> = script_keys.iter().map(Vec::as_slice).collect();
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    POP_STASH.call(&conn, &keys, &args).await
                }),
            );
        }
        let n = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"BLMPOP", BLOCK_SECONDS.as_bytes(), n.as_bytes()];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        args.extend([b"RIGHT".as_slice(), b"COUNT", b"1"]);
        (Pop::Blocking, Box::pin(self.fetch.call(&args)))
    }

    /// Whether a blocking pop is in flight (its reply may hold popped, unstashed messages).
    pub fn in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// Turns popped items into deliveries. With `stash` (the pop script's) the items are in
    /// `unacked` already; without (a blocking pop) the stash is queued on the owner's writer
    /// first, ahead of any settlement of these deliveries.
    fn accept(&mut self, key: &str, items: Vec<BytesFrame>, stash: Option<Stashed>) -> Vec<Delivery> {
        let queue = self.broker.keys.queue_of(key);
        if self.broker.keys.opts.queue_order_strategy == "round_robin" && self.queues.len() > 1 {
            if let Some(i) = self.queues.iter().position(|q| *q == queue) {
                let q = self.queues.remove(i);
                self.queues.push(q);
            }
        }
        let stashed = stash.is_some();
        let qname: Arc<str> = Arc::from(queue.as_str());
        let quoted = serde_json::to_string(&queue).expect("a string always serializes");
        let (mut hset, mut zadd): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
        let now = index_score();
        let mut out = Vec::with_capacity(items.len());
        for (j, item) in (1i64..).zip(items) {
            // The tag the script stashed this item under, if it did.
            let script_tag = stash.as_ref().filter(|s| !s.skipped.contains(&j)).map(|s| format!("{}{j}", s.prefix));
            let raw = match item {
                BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => b,
                _ => continue,
            };
            // Headers that do not decode still name the task's id, most of the time: the worker
            // fails it by id (a waiting client learns why) instead of it vanishing.
            let env = match Envelope::<Headers>::decode(&raw).or_else(|e| {
                Envelope::<Headers>::decode_lenient(&raw).ok().filter(|l| !l.headers().id.is_empty()).ok_or(e)
            }) {
                Ok(e) => e,
                Err(e) => {
                    let shown = String::from_utf8_lossy(&raw[..raw.len().min(120)]).into_owned();
                    let e = crate::protocol::shorten(&e.to_string(), crate::protocol::REPR_MAX).into_owned();
                    tracing::error!("discarding a garbage entry from queue {queue:?}: {e}; entry starts {shown:?}");
                    // The script stashed what looked like an object; take it out again.
                    if let Some(tag) = script_tag {
                        self.owner.popped(1);
                        self.owner.settle(Settlement::Ack { tag });
                    }
                    continue;
                }
            };
            let tag = script_tag.unwrap_or_else(|| env.delivery_tag().to_owned());
            let info = env.delivery_info().clone();
            let message = match env.into_task() {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!("discarding an entry of queue {queue:?} with an undecodable body: {e}");
                    if stashed {
                        self.owner.popped(1);
                        self.owner.settle(Settlement::Ack { tag });
                    }
                    continue;
                }
            };
            if !stashed {
                // [envelope, exchange, routing_key], the envelope exactly as received.
                let mut stash = Vec::with_capacity(raw.len() + quoted.len() + 8);
                stash.push(b'[');
                stash.extend_from_slice(&raw);
                stash.extend_from_slice(b",\"\",");
                stash.extend_from_slice(quoted.as_bytes());
                stash.push(b']');
                hset.extend([tag.clone().into_bytes(), stash]);
                zadd.extend([now.clone().into_bytes(), tag.clone().into_bytes()]);
            }
            self.owner.popped(1);
            let redelivered = info.redelivered || message.headers.extra.get("redelivered") == Some(&Value::Bool(true));
            let priority = message.properties.priority;
            out.push(Delivery {
                message: Box::new(message),
                info: DeliveryInfo { redelivered, ..info },
                queue: qname.clone(),
                settler: self.owner.clone(),
                key: DeliveryKey { tag, raw, priority, ..DeliveryKey::default() },
            });
        }
        if !hset.is_empty() {
            let conn = &self.writer;
            let k = &self.broker.keys;
            let (unacked, index) = (k.unacked(), k.unacked_index());
            let mut cmd: Vec<&[u8]> = vec![b"HSET", unacked.as_bytes()];
            cmd.extend(hset.iter().map(Vec::as_slice));
            conn.send(&cmd);
            let mut cmd: Vec<&[u8]> = vec![b"ZADD", index.as_bytes()];
            cmd.extend(zadd.iter().map(Vec::as_slice));
            conn.send(&cmd);
        }
        out
    }

    /// Waits until every delivery this consumer popped is settled (stolen ones included) and
    /// those settlements reached Redis.
    pub async fn flush(&self) {
        self.owner.close().await;
        // Everything queued on the writer so far got its reply once this one has.
        let _ = self.writer.call(&[b"PING"]).await;
    }

    /// At shutdown: finishes a blocking pop still in flight (its messages are returned to the
    /// caller to requeue) and waits until every queued ack and requeue reached Redis.
    pub async fn close(&mut self) -> Vec<Delivery> {
        let mut leftover = Vec::new();
        if self.pending.is_some() {
            if let Ok(batch) = self.fetch(usize::MAX).await {
                leftover = batch;
            }
        }
        self.fetch.close();
        leftover
    }
}

/// kombu's `restore_visible`: messages unacked for longer than the visibility timeout go back to
/// their queues, under `unacked_mutex` so one consumer in the fleet does it at a time.
async fn restore_visible(broker: &RedisBroker, conn: &Connection, token: &str) -> Result<usize, RedisError> {
    let k = &broker.keys;
    // kombu holds the mutex for up to 300 s; a worker killed while holding it would block every
    // restore that long, so the lease is capped at the visibility timeout (a restore takes ms).
    let lease_ms = (k.opts.visibility_timeout.saturating_mul(1000)).clamp(1000, 300_000).to_string();
    let got =
        conn.call(&[b"SET", k.unacked_mutex().as_bytes(), token.as_bytes(), b"NX", b"PX", lease_ms.as_bytes()]).await?;
    if matches!(got, BytesFrame::Null) {
        return Ok(0);
    }
    let restored = restore_locked(broker, conn).await;
    conn.send(&[b"EVAL", UNLOCK_LUA.as_bytes(), b"1", k.unacked_mutex().as_bytes(), token.as_bytes()]);
    let restored = restored?;
    if restored > 0 {
        tracing::warn!("restored {restored} unacked message(s) older than the visibility timeout");
    }
    Ok(restored)
}

async fn restore_locked(broker: &RedisBroker, conn: &Connection) -> Result<usize, RedisError> {
    let k = &broker.keys;
    let ceiling = format!("{:.6}", unix_now() - k.opts.visibility_timeout as f64);
    let mut restored = 0;
    let reply = conn
        .call(&[
            b"ZRANGE",
            k.unacked_index().as_bytes(),
            ceiling.as_bytes(),
            b"0",
            b"BYSCORE",
            b"REV",
            b"LIMIT",
            b"0",
            b"10",
        ])
        .await?;
    let BytesFrame::Array(tags) = reply else { return Ok(0) };
    for tag in tags.iter().filter_map(frame_bytes) {
        let taken = conn
            .call(&[b"EVAL", TAKE_LUA.as_bytes(), b"2", k.unacked().as_bytes(), k.unacked_index().as_bytes(), tag])
            .await?;
        let Some(payload) = frame_bytes(&taken) else { continue };
        let Ok((env, exchange, rk)) = serde_json::from_slice::<(Box<RawValue>, String, String)>(payload) else {
            tracing::error!(
                "unacked entry {} is not [envelope, exchange, routing_key]; dropped",
                String::from_utf8_lossy(tag)
            );
            continue;
        };
        let queue = if exchange.is_empty() {
            rk.clone()
        } else {
            bound_queue(broker, conn, &exchange, &rk).await.unwrap_or(rk.clone())
        };
        let raw = env.get().as_bytes();
        let priority = serde_json::from_str::<Value>(env.get())
            .ok()
            .and_then(|v| v["properties"]["priority"].as_u64())
            .unwrap_or(0) as u8;
        let marked = mark_redelivered(raw).unwrap_or_else(|| raw.to_vec());
        conn.call(&[b"RPUSH", k.queue_key(&queue, priority).as_bytes(), &marked]).await?;
        restored += 1;
    }
    Ok(restored)
}

async fn bound_queue(broker: &RedisBroker, conn: &Connection, exchange: &str, rk: &str) -> Option<String> {
    let sep = &broker.keys.opts.sep;
    match conn.call(&[b"SMEMBERS", broker.keys.binding_key(exchange).as_bytes()]).await.ok()? {
        BytesFrame::Array(members) => members.iter().filter_map(frame_bytes).find_map(|m| {
            let m = String::from_utf8_lossy(m);
            let mut parts = m.split(sep.as_str());
            let (r, _, q) = (parts.next()?, parts.next()?, parts.next()?);
            (r == rk).then(|| q.to_owned())
        }),
        _ => None,
    }
}

/// The `unacked_index` score of a message stashed now: kombu's `time()`, rounded up to whole
/// seconds. A whole number is stored as an integer in a small sorted set, where each insert
/// compares against every entry: with float scores each comparison parsed a float string, and
/// the batch's ZADD cost Redis ~6 µs per message. Rounded up, an entry never looks older than it
/// is, so nothing is restored early; at most a second late.
fn index_score() -> String {
    (unix_now().ceil() as u64).to_string()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
