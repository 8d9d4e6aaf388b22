//! kombu's AMQP transport on RabbitMQ: Celery's entities (a queue `q` is `Queue(q, Exchange(q,
//! "direct"), routing_key=q)`, all durable), publishes with confirms, one consumer per shard
//! with QoS from the shard's prefetch window, and settlements sent on the channel the message
//! came on (a delivery stolen by another shard is settled through its owner's inbox).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::{Map, Value};

use crate::config::{AmqpUrl, QueueSpec};
use crate::protocol::{DeliveryInfo, Headers, Properties, TaskMessage};
use crate::rt::{self, IoThread, Notify};
use crate::transport::delivery::{Delivery, DeliveryKey, Settler};
use crate::transport::error::TransportError;
use crate::transport::inbox::Inbox;
use crate::transport::route::Route;

use super::connection::{connection, AmqpError, Connection, Incoming, WORK};
use super::options::AmqpOptions;
use super::table;

/// An AMQP broker: shared by clients and shards (`Send + Sync`).
#[derive(Debug)]
pub struct AmqpBroker {
    /// The server.
    pub url: AmqpUrl,
    /// The transport options and queue settings.
    pub opts: AmqpOptions,
    declared: Mutex<HashSet<String>>,
    exchanges: Arc<Mutex<HashSet<String>>>,
}

impl AmqpBroker {
    /// A broker on `url`.
    pub fn new(url: AmqpUrl, opts: AmqpOptions) -> Arc<Self> {
        Arc::new(AmqpBroker { url, opts, declared: Mutex::new(HashSet::new()), exchanges: Arc::default() })
    }

    /// Publishes a kombu envelope's message on a broadcast exchange (`celery.pidbox`,
    /// `celeryev`), from any thread.
    pub fn publish_fanout(&self, exchange: &str, routing_key: &str, envelope: &[u8]) -> Result<(), TransportError> {
        super::fanout::publish(&self.url, &self.exchanges, exchange, routing_key, envelope)
    }

    /// Subscribes to a broadcast exchange; every message arrives as a kombu envelope.
    pub fn subscribe_fanout(&self, exchange: &str) -> super::AmqpSubscription {
        super::AmqpSubscription::start(&self.url, exchange)
    }

    /// Subscribes to the messages of the topic `exchange` whose routing keys match `pattern`.
    pub fn subscribe_topic(&self, exchange: &str, pattern: &str) -> super::AmqpSubscription {
        super::AmqpSubscription::bound(&self.url, exchange, pattern, &format!("{}.{exchange}", uuid::Uuid::new_v4()))
    }

    /// Binds `queue` to the direct `exchange` with `routing_key` and consumes it until dropped
    /// (a remote-control client's reply queue).
    pub fn subscribe_queue(&self, exchange: &str, routing_key: &str, queue: &str) -> super::AmqpSubscription {
        super::AmqpSubscription::bound(&self.url, exchange, routing_key, queue)
    }

    fn queue_arguments(&self, spec: &QueueSpec) -> FieldTable {
        let mut args = FieldTable::default();
        if let Some(p) = self.opts.max_priority {
            args.insert("x-max-priority".into(), AMQPValue::LongInt(i32::from(p)));
        }
        if self.opts.is_quorum(spec) {
            args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        }
        args
    }

    /// Declares `q` as Celery does: its direct exchange, the durable queue, the binding. The
    /// replies are awaited, so a queue declared before with other arguments fails here with
    /// RabbitMQ's `PRECONDITION_FAILED` and the argument it names.
    async fn declare(&self, conn: &Connection, q: &str) -> Result<(), TransportError> {
        self.declare_spec(conn, &self.opts.spec(q)).await
    }

    /// Declares `spec`'s exchange and queue and binds them.
    async fn declare_spec(&self, conn: &Connection, spec: &QueueSpec) -> Result<(), TransportError> {
        let q = spec.name.as_str();
        let ex = exchange::Declare {
            exchange: spec.exchange_name().into(),
            kind: spec.exchange_type.as_str().into(),
            durable: true,
            ..exchange::Declare::default()
        };
        let args = self.queue_arguments(spec);
        let qd = queue::Declare { queue: q.into(), durable: true, arguments: args, ..Default::default() };
        let bind = queue::Bind {
            queue: q.into(),
            exchange: spec.exchange_name().into(),
            routing_key: spec.key().into(),
            ..Default::default()
        };
        let replies = [
            conn.call(WORK, AMQPClass::Exchange(exchange::AMQPMethod::Declare(ex))),
            conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(qd))),
            conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Bind(bind))),
        ];
        for r in replies {
            r.await.map_err(|e| doing(e, &format!("declaring queue {q:?}")))?;
        }
        Ok(())
    }

    async fn ensure_declared(&self, conn: &Connection, q: &str) -> Result<(), TransportError> {
        if q.is_empty() || self.declared.lock().unwrap_or_else(|p| p.into_inner()).contains(q) {
            return Ok(());
        }
        self.declare(conn, q).await?;
        self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(q.to_owned());
        Ok(())
    }

    /// The AMQP properties of a task message.
    fn properties(msg: &TaskMessage) -> AMQPProperties {
        let headers = match serde_json::to_value(&msg.headers) {
            Ok(Value::Object(m)) => table::to_table(&m),
            _ => FieldTable::default(),
        };
        let p = &msg.properties;
        let mut props = AMQPProperties::default()
            .with_content_type(msg.content_type.as_str().into())
            .with_content_encoding(msg.content_encoding.as_str().into())
            .with_headers(headers)
            .with_delivery_mode(p.delivery_mode)
            .with_priority(p.priority);
        if let Some(c) = &p.correlation_id {
            props = props.with_correlation_id(c.as_str().into());
        }
        if let Some(r) = &p.reply_to {
            props = props.with_reply_to(r.as_str().into());
        }
        if let Some(e) = &p.expiration {
            props = props.with_expiration(e.as_str().into());
        }
        props
    }

    /// Publishes on this thread's connection and waits for the broker's confirm. A countdown
    /// of a second or more to a quorum setup's topic exchange goes through Celery's native
    /// delayed delivery (`celery_delayed_27` with the delay's bits in the routing key).
    async fn publish_here(self: Arc<Self>, route: Route, msg: TaskMessage) -> Result<(), TransportError> {
        let conn = connection(&self.url);
        self.ensure_declared(&conn, &route.queue).await?;
        let props = Self::properties(&msg);
        if let Some(delay) = self.native_delay(&route, &msg) {
            self.ensure_delayed_topology(&conn).await?;
            let key = super::delayed::routing_key(delay, &route.routing_key);
            return conn.publish(super::delayed::ENTRY, &key, props, &msg.body).await.map_err(TransportError::from);
        }
        conn.publish(&route.exchange, &route.routing_key, props, &msg.body).await.map_err(TransportError::from)
    }

    /// Whole seconds until the message's ETA, when native delayed delivery carries it.
    fn native_delay(&self, route: &Route, msg: &TaskMessage) -> Option<u64> {
        if !self.opts.any_quorum() || route.exchange.is_empty() || self.opts.exchange_type(&route.exchange) == "direct"
        {
            return None;
        }
        let eta = chrono::DateTime::parse_from_rfc3339(msg.headers.eta.as_deref()?).ok()?;
        let secs = (eta.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        (secs >= 1).then_some(secs as u64)
    }

    async fn ensure_delayed_topology(&self, conn: &Connection) -> Result<(), TransportError> {
        if self.declared.lock().unwrap_or_else(|p| p.into_inner()).contains(super::delayed::ENTRY) {
            return Ok(());
        }
        super::delayed::declare_topology(conn, &self.opts.delayed_queue_type).await?;
        self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(super::delayed::ENTRY.to_owned());
        Ok(())
    }

    /// Publishes `msg` along `route` from any thread; waits for the broker's confirm (on a shard
    /// it is queued on the shard's connection and a failure is logged).
    pub fn publish(self: &Arc<Self>, route: &Route, msg: TaskMessage) -> Result<(), TransportError> {
        let (b, route) = (self.clone(), route.clone());
        rt::run_here_or_wait(move || b.publish_here(route, msg), |e| tracing::error!("publishing to amqp failed: {e}"))
    }

    /// Publishes many messages along `route`, all in flight at once; waits for every confirm.
    pub fn publish_batch(self: &Arc<Self>, route: &Route, msgs: Vec<TaskMessage>) -> Result<(), TransportError> {
        if rt::on_executor() {
            return Err(TransportError::Server("publish_batch blocks: call it from outside a shard".into()));
        }
        let (b, route) = (self.clone(), route.clone());
        rt::block_on(IoThread::global().run(move || async move {
            let conn = connection(&b.url);
            b.ensure_declared(&conn, &route.queue).await?;
            let confirms: Vec<_> = msgs
                .iter()
                .map(|m| conn.publish(&route.exchange, &route.routing_key, Self::properties(m), &m.body))
                .collect();
            for c in confirms {
                c.await.map_err(TransportError::from)?;
            }
            Ok(())
        }))
    }

    /// Publishes from any executor without blocking a thread.
    pub fn publish_async(
        self: &Arc<Self>,
        route: &Route,
        msg: TaskMessage,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static {
        let (b, route) = (self.clone(), route.clone());
        IoThread::global().run(move || b.publish_here(route, msg))
    }

    /// Declares `queues` (Celery's entities for each) and waits for RabbitMQ's word on each;
    /// with quorum queues, also native delayed delivery's topology and each topic queue's
    /// bindings to it (Celery's `DelayedDelivery` worker step).
    pub fn declare_queues(self: &Arc<Self>, queues: &[String]) -> Result<(), TransportError> {
        let (b, queues) = (self.clone(), queues.to_vec());
        rt::block_on(IoThread::global().run(move || async move {
            let conn = connection(&b.url);
            for q in &queues {
                b.ensure_declared(&conn, q).await?;
            }
            if b.opts.any_quorum() {
                b.ensure_delayed_topology(&conn).await?;
                for q in &queues {
                    let spec = b.opts.spec(q);
                    if spec.exchange_type == "direct" {
                        tracing::warn!(
                            "Exchange {} is a direct exchange and native delayed delivery does not support direct \
                             exchanges. ETA tasks published to this exchange will block the worker until the ETA arrives.",
                            spec.exchange_name()
                        );
                        continue;
                    }
                    super::delayed::bind_queue(&conn, &spec).await?;
                }
            }
            Ok(())
        }))
    }

    /// Messages ready in `queue` (`queue.declare` passive).
    pub fn queue_len(self: &Arc<Self>, q: &str) -> Result<usize, TransportError> {
        let (b, q) = (self.clone(), q.to_owned());
        rt::block_on(IoThread::global().run(move || async move {
            let conn = connection(&b.url);
            let m = queue::Declare { queue: q.as_str().into(), passive: true, ..Default::default() };
            match conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(m))).await {
                Ok(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => Ok(ok.message_count as usize),
                Ok(other) => Err(TransportError::Server(format!("unexpected reply {other:?}"))),
                Err(AmqpError::Refused(e)) if e.starts_with("404") => Ok(0),
                Err(e) => Err(e.into()),
            }
        }))
    }

    /// `queue.purge`: drops the ready messages of `q` (unacked ones stay); returns how many.
    /// A queue that does not exist holds none.
    pub fn purge(self: &Arc<Self>, q: &str) -> Result<usize, TransportError> {
        let (b, q) = (self.clone(), q.to_owned());
        rt::block_on(IoThread::global().run(move || async move {
            let conn = connection(&b.url);
            let m = queue::Purge { queue: q.as_str().into(), ..Default::default() };
            match conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Purge(m))).await {
                Ok(AMQPClass::Queue(queue::AMQPMethod::PurgeOk(ok))) => Ok(ok.message_count as usize),
                Ok(other) => Err(TransportError::Server(format!("unexpected reply {other:?}"))),
                Err(AmqpError::Refused(e)) if e.starts_with("404") => Ok(0),
                Err(e) => Err(e.into()),
            }
        }))
    }

    /// Opens the consumer of `queues` on the current shard (it consumes from its first fetch).
    pub fn consumer(self: &Arc<Self>, queues: &[String]) -> AmqpConsumer {
        let conn = connection(&self.url);
        let state = Rc::new(ConsumerState::default());
        *state.queues.borrow_mut() = queues.iter().map(|q| (self.opts.spec(q), true)).collect();
        let owner = Owner::start(conn.clone(), state.clone());
        AmqpConsumer {
            broker: self.clone(),
            conn,
            state,
            owner,
            started: false,
            tag: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

/// What a shard's consumer and its owner task share.
#[derive(Default)]
struct ConsumerState {
    buffer: RefCell<VecDeque<Incoming>>,
    ready: Notify,
    /// Delivery tags handed out and not yet settled, of the current connection.
    outstanding: RefCell<BTreeSet<u64>>,
    /// The QoS prefetch count in force.
    qos: Cell<u16>,
    /// The window the shard asked for first: QoS never goes below it.
    base: Cell<u16>,
    /// Every queue consumed since the start, and whether it still is: consumer tag
    /// `{tag}.{generation}.{i}` consumes queue `i`, so a delivery names its queue by its tag.
    queues: RefCell<Vec<(QueueSpec, bool)>>,
    /// Queues RabbitMQ refused to declare or consume, not reported yet.
    refused: RefCell<Vec<String>>,
}

/// One shard's AMQP consumer.
pub struct AmqpConsumer {
    broker: Arc<AmqpBroker>,
    conn: Connection,
    state: Rc<ConsumerState>,
    owner: Arc<Owner>,
    started: bool,
    tag: String,
}

/// The prefetch window. On RabbitMQ `global=true` means the channel: the shard's window across
/// all its queues, and a change applies to consumers already running (Celery's per-ETA raises).
/// Quorum queues refuse it (Celery's `worker_detect_quorum_queues`): per consumer there, which
/// holds for consumers started after the change only.
fn qos(count: u16, per_channel: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: count, global: per_channel }))
}

impl AmqpConsumer {
    fn start(&mut self, prefetch: usize) {
        self.started = true;
        self.state.qos.set(prefetch.clamp(1, u16::MAX as usize) as u16);
        self.state.base.set(self.state.qos.get());
        let (broker, state, tag) = (self.broker.clone(), self.state.clone(), self.tag.clone());
        let deliveries = self.state.clone();
        self.conn.on_delivery(move |d| {
            deliveries.buffer.borrow_mut().push_back(d);
            deliveries.ready.notify();
        });
        let hook = move |c: &Connection| {
            state.buffer.borrow_mut().clear();
            state.outstanding.borrow_mut().clear();
            c.send_sync(WORK, qos(state.qos.get(), !broker.opts.any_quorum()));
            let n = state.queues.borrow().len();
            let (broker, state, tag, c) = (broker.clone(), state.clone(), tag.clone(), c.clone());
            // Declared and consumed in a task of their own: the hook runs before the reader. A
            // refused queue is skipped and the rest go on; a lost connection ends the round
            // (the reconnect runs the hook again).
            rt::spawn_local(async move {
                for i in 0..n {
                    if let Err(TransportError::ConnectionLost(_)) = consume_queue(&broker, &c, &state, &tag, i).await {
                        return;
                    }
                }
            });
        };
        if self.conn.is_up() {
            hook(&self.conn);
        }
        self.conn.on_connect(hook);
    }

    /// Consumes `spec`'s queue too (declared first, with its exchange and binding), from now
    /// on and after every reconnection.
    pub fn consume(&mut self, spec: &QueueSpec) {
        let i = {
            let mut queues = self.state.queues.borrow_mut();
            match queues.iter().position(|(q, _)| q.name == spec.name) {
                Some(i) if queues[i].1 => return,
                Some(i) => {
                    queues[i] = (spec.clone(), true);
                    i
                }
                None => {
                    queues.push((spec.clone(), true));
                    queues.len() - 1
                }
            }
        };
        if self.started && self.conn.is_up() {
            let (broker, c, state, tag) =
                (self.broker.clone(), self.conn.clone(), self.state.clone(), self.tag.clone());
            rt::spawn_local(async move {
                let _ = consume_queue(&broker, &c, &state, &tag, i).await;
            });
        }
    }

    /// Stops consuming `queue` (`basic.cancel`); deliveries of it already sent still arrive.
    pub fn cancel(&mut self, queue: &str) {
        let i = {
            let mut queues = self.state.queues.borrow_mut();
            let Some(i) = queues.iter().position(|(q, on)| *on && q.name == queue) else { return };
            queues[i].1 = false;
            i
        };
        if self.started && self.conn.is_up() {
            let cancel = self.cancel_method(i);
            let call = self.conn.call(WORK, cancel);
            let queue = queue.to_owned();
            rt::spawn_local(async move {
                if let Err(e) = call.await {
                    tracing::warn!("amqp: cancelling the consumer of {queue:?}: {e}");
                }
            });
        }
    }

    fn cancel_method(&self, i: usize) -> AMQPClass {
        let cancel = basic::Cancel { consumer_tag: consumer_tag(&self.tag, self.conn.generation(), i), nowait: false };
        AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel))
    }

    /// Waits for deliveries; returns up to `max`. Raises the QoS window when the shard has more
    /// room than the broker lets through (ETA tasks held outside the prefetch count, as Celery
    /// raises its QoS for each).
    pub async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, TransportError> {
        if !self.started {
            self.start(max);
        }
        // Raised as soon as held tasks take room, lowered again (not below the first window)
        // once they ran and the window is half unused, as Celery's QoS increments and decrements.
        let want = (self.state.outstanding.borrow().len() + max).min(u16::MAX as usize) as u16;
        let (now, want) = (self.state.qos.get(), want.max(self.state.base.get()));
        if want > now || (want <= now / 2 && want < now) {
            self.state.qos.set(want);
            self.conn.send_sync(WORK, qos(want, !self.broker.opts.any_quorum()));
        }
        loop {
            let seen = self.state.ready.epoch();
            let out = self.take(max);
            if !out.is_empty() || !self.state.refused.borrow().is_empty() {
                return Ok(out);
            }
            self.state.ready.changed(seen).await;
        }
    }

    /// The queues RabbitMQ refused since the last call (each logged with its words), no longer
    /// consumed here.
    pub fn refused(&mut self) -> Vec<String> {
        std::mem::take(&mut *self.state.refused.borrow_mut())
    }

    fn take(&self, max: usize) -> Vec<Delivery> {
        let generation = self.conn.generation();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(d) = self.state.buffer.borrow_mut().pop_front() else { break };
            if d.generation != generation {
                continue; // RabbitMQ requeued it when that connection ended
            }
            let number = d.deliver.delivery_tag;
            self.state.outstanding.borrow_mut().insert(number);
            self.owner.inbox.taken(1);
            out.push(to_delivery(d, &self.state.queues.borrow(), self.owner.clone()));
        }
        out
    }

    /// Whether a fetch is unanswered (never: deliveries arrive by themselves).
    pub fn in_flight(&self) -> bool {
        false
    }

    /// Stops consuming: cancels the consumers; deliveries already here are returned to requeue.
    pub async fn close(&mut self) -> Vec<Delivery> {
        if self.started && self.conn.is_up() {
            let on: Vec<usize> =
                self.state.queues.borrow().iter().enumerate().filter(|(_, (_, on))| *on).map(|(i, _)| i).collect();
            let cancels: Vec<_> = on.into_iter().map(|i| self.conn.call(WORK, self.cancel_method(i))).collect();
            for c in cancels {
                let _ = c.await;
            }
        }
        self.take(usize::MAX)
    }

    /// Waits until every delivery taken was settled and those settlements reached RabbitMQ.
    pub async fn flush(&self) {
        self.owner.inbox.close().await;
        if self.conn.is_up() {
            // A synchronous method's reply comes after everything sent before it was processed.
            let _ = self.conn.call(WORK, qos(self.state.qos.get(), !self.broker.opts.any_quorum())).await;
        }
        // The shard is done with it: RabbitMQ requeues whatever was left unacked on purpose.
        super::connection::forget(&self.broker.url);
        self.conn.close();
    }
}

/// Declares queue `i` and consumes it under its [`consumer_tag`], unless it stopped being
/// consumed meanwhile. What RabbitMQ refuses (a queue held with other arguments, no permission)
/// takes the queue out of what this consumer consumes and is reported by
/// [`AmqpConsumer::refused`]: retrying it after the channel reopens would close the channel
/// again, for ever. A lost connection is left to the reconnect, which consumes again.
async fn consume_queue(
    broker: &AmqpBroker,
    c: &Connection,
    state: &ConsumerState,
    tag: &str,
    i: usize,
) -> Result<(), TransportError> {
    let Some(spec) = state.queues.borrow().get(i).filter(|(_, on)| *on).map(|(q, _)| q.clone()) else {
        return Ok(());
    };
    let q = &spec.name;
    let consume = basic::Consume {
        queue: q.as_str().into(),
        consumer_tag: consumer_tag(tag, c.generation(), i),
        ..Default::default()
    };
    let done = match broker.declare_spec(c, &spec).await {
        Ok(()) => c
            .call(WORK, AMQPClass::Basic(basic::AMQPMethod::Consume(consume)))
            .await
            .map(|_| ())
            .map_err(|e| doing(e, &format!("consuming {q:?}"))),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => {
            broker.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(q.clone());
            Ok(())
        }
        Err(e) => {
            tracing::error!("amqp: {e}");
            if !matches!(e, TransportError::ConnectionLost(_)) {
                state.queues.borrow_mut()[i].1 = false;
                state.refused.borrow_mut().push(q.clone());
                state.ready.notify();
            }
            Err(e)
        }
    }
}

/// The consumer tag of queue `i` on the channel incarnation `generation`: `<tag>.<generation>.<i>`
/// (a delivery names its queue by the last part). A tag is never used again after its channel
/// closed: RabbitMQ was seen refusing one reused on the reopened channel (`530 NOT_ALLOWED -
/// attempt to reuse consumer tag`, which closes the whole connection) in about one run in five.
fn consumer_tag(tag: &str, generation: u64, i: usize) -> ShortString {
    ShortString::from(format!("{tag}.{generation}.{i}"))
}

/// `e`, met while `what`: a lost connection stays one (the reconnect retries), what RabbitMQ
/// refused says what was being done.
fn doing(e: AmqpError, what: &str) -> TransportError {
    match e {
        AmqpError::ConnectionLost(why) => TransportError::ConnectionLost(why),
        refused => TransportError::Server(format!("{what}: {refused}")),
    }
}

fn to_delivery(d: Incoming, queues: &[(QueueSpec, bool)], owner: Arc<Owner>) -> Delivery {
    let p = &d.properties;
    let headers = match p.headers().as_ref() {
        None => Headers::lenient(Map::new()),
        Some(t) => match serde_json::from_slice::<Headers>(&table::to_json(t)) {
            Ok(h) => h,
            // Header by header, naming the ones that do not read (the worker fails the task).
            Err(_) => Headers::lenient(table::from_table(t)),
        },
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
    let properties = Properties {
        correlation_id: s(p.correlation_id()),
        reply_to: s(p.reply_to()),
        delivery_mode: p.delivery_mode().unwrap_or(2),
        expiration: s(p.expiration()),
        priority: p.priority().unwrap_or(0),
    };
    let message = TaskMessage {
        headers,
        properties,
        content_type: s(p.content_type()).unwrap_or_else(|| "application/json".into()),
        content_encoding: s(p.content_encoding()).unwrap_or_else(|| "utf-8".into()),
        body: d.body,
    };
    let queue = d
        .deliver
        .consumer_tag
        .as_str()
        .rsplit_once('.')
        .and_then(|(_, i)| i.parse::<usize>().ok())
        .and_then(|i| queues.get(i))
        .map_or_else(|| d.deliver.routing_key.as_str().to_owned(), |(q, _)| q.name.clone());
    Delivery {
        message: Box::new(message),
        info: DeliveryInfo {
            exchange: d.deliver.exchange.as_str().to_owned(),
            routing_key: d.deliver.routing_key.as_str().to_owned(),
            redelivered: d.deliver.redelivered,
        },
        queue: Arc::from(queue.as_str()),
        settler: owner,
        key: DeliveryKey { number: d.deliver.delivery_tag, generation: d.generation, ..DeliveryKey::default() },
    }
}

#[derive(Debug)]
enum Op {
    Ack,
    Requeue,
    Forget,
}

/// The settlement inbox of one shard's consumer: acks and rejects must go out on the channel
/// the message came on, so deliveries run by other shards come back here.
#[derive(Debug)]
struct Owner {
    /// (connection generation, delivery tag, what to do)
    inbox: Inbox<(u64, u64, Op)>,
}

impl Owner {
    fn start(conn: Connection, state: Rc<ConsumerState>) -> Arc<Owner> {
        let owner = Arc::new(Owner { inbox: Inbox::new() });
        rt::spawn_local(serve(owner.clone(), conn, state));
        owner
    }

    fn settle(&self, key: DeliveryKey, op: Op) {
        self.inbox.put((key.generation, key.number, op));
    }
}

impl Settler for Owner {
    fn ack(&self, key: DeliveryKey) {
        self.settle(key, Op::Ack);
    }

    fn requeue(&self, key: DeliveryKey, _: &str, _: Box<TaskMessage>) {
        self.settle(key, Op::Requeue);
    }

    fn abandon(&self, key: DeliveryKey) {
        self.settle(key, Op::Forget);
    }
}

/// Sends the settlements of each round: one `basic.ack` with `multiple` for the acked tags below
/// every tag still outstanding (the contiguous completed prefix), single acks for the rest,
/// `basic.reject` with requeue for requeues. A message abandoned stays unacked until the
/// connection ends, when RabbitMQ delivers it again.
async fn serve(owner: Arc<Owner>, conn: Connection, state: Rc<ConsumerState>) {
    let mut acks: Vec<u64> = Vec::new();
    loop {
        let seen = owner.inbox.epoch();
        let generation = conn.generation();
        let mut settled = 0;
        while let Some((g, number, op)) = owner.inbox.next() {
            settled += 1;
            if g != generation {
                continue;
            }
            match op {
                Op::Ack => acks.push(number),
                Op::Requeue => {
                    state.outstanding.borrow_mut().remove(&number);
                    let reject = basic::Reject { delivery_tag: number, requeue: true };
                    conn.send(WORK, AMQPClass::Basic(basic::AMQPMethod::Reject(reject)));
                }
                // Still unacked with RabbitMQ: it counts against QoS until the connection ends.
                Op::Forget => {}
            }
        }
        if !acks.is_empty() {
            acks.sort_unstable();
            let mut outstanding = state.outstanding.borrow_mut();
            for n in &acks {
                outstanding.remove(n);
            }
            let floor = outstanding.first().copied().unwrap_or(u64::MAX);
            let prefix = acks.partition_point(|&n| n < floor);
            let ack = |tag: u64, multiple: bool| {
                conn.send(WORK, AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple })))
            };
            match prefix {
                0 => {}
                1 => ack(acks[0], false),
                n => ack(acks[n - 1], true),
            }
            for &n in &acks[prefix..] {
                ack(n, false);
            }
            acks.clear();
        }
        owner.inbox.settled(settled);
        if owner.inbox.finished() {
            return;
        }
        owner.inbox.changed(seen).await;
    }
}

/// Whether RabbitMQ at `url` accepts a connection and login, from a thread outside the shards:
/// `Err((fatal, why))`, `fatal` for a refused login or virtual host.
pub fn check(url: &AmqpUrl) -> Result<(), (bool, String)> {
    let url = url.clone();
    rt::block_on(IoThread::global().run(move || async move {
        let conn = connection(&url);
        // Any synchronous method answers once the login and the virtual host were accepted.
        let r = rt::timeout_anywhere(Duration::from_secs(10), conn.call(WORK, qos(0, true))).await;
        match r {
            Some(Ok(_)) => Ok(()),
            Some(Err(AmqpError::Refused(e))) => Err((true, format!("{}: {e}", url.redacted()))),
            Some(Err(e)) => Err((false, e.to_string())),
            None => Err((false, format!("{}: no answer within 10s", url.redacted()))),
        }
    }))
}
