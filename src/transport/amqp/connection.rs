//! One AMQP connection on a shard, driven by amq-protocol's frames: a writer task sends what
//! was queued in one scheduling round as one write (acks, publishes and their content frames
//! pipeline with no timer), a reader task routes each frame to its channel. Channel 1 carries
//! declarations, QoS, the consumer and its acks; channel 2 publishes with confirms (each publish
//! waits for its own confirm, many in flight at once). Heartbeats are sent when nothing else was
//! written, and a server silent for two intervals is taken as gone. The connection reconnects by
//! itself with backoff; what was waiting fails with the reason, and the connect hook re-declares
//! and re-consumes. What RabbitMQ says when it closes a channel or the connection (the code, the
//! text, the method) is the error every waiter gets.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{channel, confirm, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::AmqpUrl;
use crate::rt::{self, Notify};
use crate::transport::error::TransportError;

use super::frame::{self, Frame};

/// The channel of declarations, QoS, consuming and acks.
pub(super) const WORK: u16 = 1;
/// The publishing channel, in confirm mode.
pub(super) const PUBLISH: u16 = 2;

thread_local! {
    /// This thread's connection to each server (a shard's, or the I/O thread's for clients).
    static CONNECTIONS: RefCell<HashMap<AmqpUrl, Connection>> = RefCell::new(HashMap::new());
}

/// This thread's connection to `url` (opened on first use). On an executor only.
pub(super) fn connection(url: &AmqpUrl) -> Connection {
    CONNECTIONS
        .with(|c| c.borrow_mut().entry(url.clone()).or_insert_with(|| Connection::open(url.clone(), "shard")).clone())
}

/// Drops this thread's connection to `url` from the registry (its owner closes it).
pub(super) fn forget(url: &AmqpUrl) {
    CONNECTIONS.with(|c| c.borrow_mut().remove(url));
}

thread_local! {
    /// Connections the I/O executor keeps for a handle held elsewhere ([`IoHeld`]), by id.
    static HELD: RefCell<HashMap<u64, Connection>> = RefCell::new(HashMap::new());
}

/// A connection owned by the I/O executor on behalf of a handle on any thread (a broadcast
/// subscription, an rpc:// reply queue); dropping the handle closes the connection there.
#[derive(Debug)]
pub(super) struct IoHeld(u64);

/// The connection kept for the handle numbered `id`. On the I/O executor.
pub(super) fn held(id: u64) -> Option<Connection> {
    HELD.with(|h| h.borrow().get(&id).cloned())
}

impl IoHeld {
    /// Its number, for [`held`].
    pub(super) fn id(&self) -> u64 {
        self.0
    }

    /// Hands `conn` to the I/O executor's keeping. On the I/O executor.
    pub(super) fn keep(conn: Connection) -> IoHeld {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            let id = h.keys().max().map_or(1, |m| m + 1);
            h.insert(id, conn);
            IoHeld(id)
        })
    }
}

impl Drop for IoHeld {
    fn drop(&mut self) {
        let id = self.0;
        // Queued at once; nobody needs to wait for it.
        drop(rt::IoThread::global().run(move || async move {
            if let Some(c) = HELD.with(|h| h.borrow_mut().remove(&id)) {
                c.close();
            }
        }));
    }
}

/// An AMQP operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AmqpError {
    /// No connection, or it broke.
    #[error("connection to {0}")]
    ConnectionLost(String),
    /// RabbitMQ closed the channel or the connection: its reply code and words.
    #[error("{0}")]
    Refused(String),
    /// RabbitMQ would not take a published message (`basic.nack`).
    #[error("the broker did not take the message (basic.nack)")]
    Nacked,
}

impl From<AmqpError> for TransportError {
    /// A broken connection stays one (callers retry it); what RabbitMQ refused is its words.
    fn from(e: AmqpError) -> Self {
        match e {
            AmqpError::ConnectionLost(e) => TransportError::ConnectionLost(e),
            other => TransportError::Server(other.to_string()),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

type Reply = flume::Sender<Result<AMQPClass, AmqpError>>;

enum Waiter {
    Discard,
    Reply(Reply),
}

/// A message delivered to the consumer: the method's fields, its properties and body.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) deliver: basic::Deliver,
    pub(super) properties: AMQPProperties,
    pub(super) body: Bytes,
    /// Which connection it came on: acks of an older one are void (RabbitMQ requeued those).
    pub(super) generation: u64,
}

struct Assembling {
    deliver: basic::Deliver,
    header: Option<AMQPContentHeader>,
    /// The body's frames: one, almost always (kept as it was read, no copy), else joined.
    first: Option<Bytes>,
    rest: BytesMut,
}

impl Assembling {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()
    }

    fn push(&mut self, b: Bytes) {
        match &self.first {
            None => self.first = Some(b),
            Some(_) => self.rest.extend_from_slice(&b),
        }
    }

    fn body(first: Option<Bytes>, rest: BytesMut) -> Bytes {
        match first {
            None => Bytes::new(),
            Some(f) if rest.is_empty() => f,
            Some(f) => {
                let mut all = BytesMut::with_capacity(f.len() + rest.len());
                all.extend_from_slice(&f);
                all.extend_from_slice(&rest);
                all.freeze()
            }
        }
    }
}

type DeliveryHandler = Box<dyn FnMut(Incoming)>;
type ConnectHook = Box<dyn Fn(&Connection)>;

struct Inner {
    url: AmqpUrl,
    role: &'static str,
    outbox: RefCell<Vec<u8>>,
    wake: Notify,
    /// Replies awaited on each channel, in the order their methods were sent.
    waiters: [RefCell<VecDeque<Waiter>>; 3],
    /// Publishes awaiting their confirm, by sequence number.
    confirms: RefCell<BTreeMap<u64, flume::Sender<Result<(), AmqpError>>>>,
    next_seq: Cell<u64>,
    assembling: RefCell<Option<Assembling>>,
    on_delivery: RefCell<Option<DeliveryHandler>>,
    on_connect: RefCell<Option<ConnectHook>>,
    frame_max: Cell<usize>,
    heartbeat: Cell<u16>,
    /// Bumped on every new connection.
    generation: Cell<u64>,
    up: Cell<bool>,
    closed: Cell<bool>,
    last_error: RefCell<String>,
    last_write: Cell<Instant>,
    last_read: Cell<Instant>,
}

/// A shard-local AMQP connection handle; clones share the connection.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "amqp::Connection({:?}, {})", self.inner.url, self.inner.role)
    }
}

impl Connection {
    /// Opens a connection (it connects in the background; methods queue meanwhile).
    pub(crate) fn open(url: AmqpUrl, role: &'static str) -> Connection {
        let now = Instant::now();
        let c = Connection {
            inner: Rc::new(Inner {
                url,
                role,
                outbox: RefCell::new(Vec::with_capacity(16 * 1024)),
                wake: Notify::new(),
                waiters: Default::default(),
                confirms: RefCell::new(BTreeMap::new()),
                next_seq: Cell::new(1),
                assembling: RefCell::new(None),
                on_delivery: RefCell::new(None),
                on_connect: RefCell::new(None),
                frame_max: Cell::new(131_072),
                heartbeat: Cell::new(0),
                generation: Cell::new(0),
                up: Cell::new(false),
                closed: Cell::new(false),
                last_error: RefCell::new("not connected yet".to_owned()),
                last_write: Cell::new(now),
                last_read: Cell::new(now),
            }),
        };
        rt::spawn_local(drive(c.clone()));
        c
    }

    /// Runs `hook` after every (re)connect and after RabbitMQ closed the work channel; after a
    /// reconnect its methods are the first written (what was queued died with the old
    /// connection).
    pub(crate) fn on_connect(&self, hook: impl Fn(&Connection) + 'static) {
        *self.inner.on_connect.borrow_mut() = Some(Box::new(hook));
    }

    /// Hands every delivered message to `handler`.
    pub(crate) fn on_delivery(&self, handler: impl FnMut(Incoming) + 'static) {
        *self.inner.on_delivery.borrow_mut() = Some(Box::new(handler));
    }

    /// The current connection's number (see [`Incoming::generation`]).
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.get()
    }

    /// Whether the connection is open now (its channels ready).
    pub(crate) fn is_up(&self) -> bool {
        self.inner.up.get()
    }

    /// Stops the connection after what is queued.
    pub(crate) fn close(&self) {
        self.inner.closed.set(true);
        self.inner.wake.notify();
    }

    fn lost(&self) -> AmqpError {
        AmqpError::ConnectionLost(format!("{}: {}", self.inner.url.redacted(), self.inner.last_error.borrow()))
    }

    /// Queues a method that has no reply (`basic.ack`, `basic.reject`).
    pub(crate) fn send(&self, ch: u16, method: AMQPClass) {
        frame::put_method(&mut self.inner.outbox.borrow_mut(), ch, method);
        self.inner.wake.notify();
    }

    /// Queues a synchronous method whose reply nobody needs (`basic.qos`).
    pub(crate) fn send_sync(&self, ch: u16, method: AMQPClass) {
        self.inner.waiters[ch as usize].borrow_mut().push_back(Waiter::Discard);
        self.send(ch, method);
    }

    /// Queues a synchronous method and returns its reply.
    pub(crate) fn call(
        &self,
        ch: u16,
        method: AMQPClass,
    ) -> impl std::future::Future<Output = Result<AMQPClass, AmqpError>> + 'static {
        let (tx, rx) = flume::bounded(1);
        self.inner.waiters[ch as usize].borrow_mut().push_back(Waiter::Reply(tx));
        self.send(ch, method);
        let c = self.clone();
        async move { rx.recv_async().await.unwrap_or_else(|_| Err(c.lost())) }
    }

    /// Publishes on the confirm channel; resolves once RabbitMQ confirmed it.
    pub(crate) fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: AMQPProperties,
        body: &[u8],
    ) -> impl std::future::Future<Output = Result<(), AmqpError>> + 'static {
        let (tx, rx) = flume::bounded(1);
        let inner = &self.inner;
        let seq = inner.next_seq.get();
        inner.next_seq.set(seq + 1);
        inner.confirms.borrow_mut().insert(seq, tx);
        {
            let mut out = inner.outbox.borrow_mut();
            let method = basic::Publish {
                exchange: ShortString::from(exchange),
                routing_key: ShortString::from(routing_key),
                mandatory: false,
                immediate: false,
            };
            frame::put_method(&mut out, PUBLISH, AMQPClass::Basic(basic::AMQPMethod::Publish(method)));
            frame::put_content(&mut out, PUBLISH, properties, body, inner.frame_max.get());
        }
        inner.wake.notify();
        let c = self.clone();
        async move { rx.recv_async().await.unwrap_or_else(|_| Err(c.lost())) }
    }

    /// Fails everything waiting, for a connection that ended; the outbox is emptied (its
    /// methods belonged to channels that are gone).
    fn fail_all(&self, why: &AmqpError) {
        let inner = &self.inner;
        inner.up.set(false);
        inner.outbox.borrow_mut().clear();
        for w in &inner.waiters {
            for w in w.borrow_mut().drain(..) {
                if let Waiter::Reply(tx) = w {
                    let _ = tx.try_send(Err(why.clone()));
                }
            }
        }
        for (_, tx) in std::mem::take(&mut *inner.confirms.borrow_mut()) {
            let _ = tx.try_send(Err(why.clone()));
        }
        inner.next_seq.set(1);
        inner.assembling.borrow_mut().take();
    }
}

fn close_text(c: &connection::Close) -> String {
    format!("{} {} (class {}, method {})", c.reply_code, c.reply_text, c.class_id, c.method_id)
}

fn channel_close_text(c: &channel::Close) -> String {
    format!("{} {} (class {}, method {})", c.reply_code, c.reply_text, c.class_id, c.method_id)
}

async fn connect(url: &AmqpUrl) -> Result<Box<dyn Io>, String> {
    let tcp = rt::net::TcpStream::connect((url.host.as_str(), url.port)).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &url.tls else { return Ok(Box::new(tcp)) };
    let config = crate::transport::tls::client_config(tls)?;
    let name = crate::transport::tls::server_name(&url.host).map_err(|e| e.to_string())?;
    Ok(Box::new(futures_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?))
}

/// Reads frames until a method arrives (the handshake's replies are on channels 0, 1 and 2).
async fn read_method(io: &mut Box<dyn Io>, buf: &mut BytesMut) -> Result<AMQPClass, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(f) = frame::take(buf)? {
            match f {
                Frame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                    return Err(close_text(&c));
                }
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                    return Err(channel_close_text(&c));
                }
                Frame::Method(_, m) => return Ok(m),
                _ => continue,
            }
        }
        let n = io.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn client_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "consumer_cancel_notify",
        "connection.blocked",
        "basic.nack",
        "authentication_failure_close",
        "exchange_exchange_bindings",
    ] {
        caps.insert(c.into(), AMQPValue::Boolean(true));
    }
    let mut t = FieldTable::default();
    t.insert("product".into(), AMQPValue::LongString(LongString::from("celeriac")));
    t.insert("version".into(), AMQPValue::LongString(LongString::from(env!("CARGO_PKG_VERSION"))));
    t.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    t
}

/// The opening handshake: PLAIN login, tuning, the virtual host, and the two channels.
async fn handshake(io: &mut Box<dyn Io>, inner: &Inner) -> Result<BytesMut, String> {
    let url = &inner.url;
    let mut buf = BytesMut::with_capacity(8192);
    io.write_all(frame::PROTOCOL_HEADER).await.map_err(|e| e.to_string())?;
    let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = read_method(io, &mut buf).await? else {
        return Err("the server did not start an AMQP 0-9-1 connection".into());
    };
    let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
    if !mechanisms.split(' ').any(|m| m == "PLAIN") {
        return Err(format!("the server offers {mechanisms:?}; celeriac logs in with PLAIN"));
    }
    let mut out = Vec::new();
    let response = format!("\0{}\0{}", url.user, url.password);
    let start_ok = connection::StartOk {
        client_properties: client_properties(),
        mechanism: "PLAIN".into(),
        response: LongString::from(response.as_bytes()),
        locale: "en_US".into(),
    };
    frame::put_method(&mut out, 0, AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)));
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    let tune = match read_method(io, &mut buf).await {
        Ok(AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => t,
        Ok(other) => return Err(format!("expected connection.tune, got {other:?}")),
        Err(e) if e.starts_with("403") => return Err(format!("ACCESS_REFUSED: login as {:?} refused: {e}", url.user)),
        Err(e) => return Err(e),
    };
    let pick = |ours: u32, theirs: u32| {
        if theirs == 0 {
            ours
        } else if ours == 0 {
            theirs
        } else {
            ours.min(theirs)
        }
    };
    let frame_max = pick(url.frame_max, tune.frame_max).max(4096);
    let heartbeat =
        if url.heartbeat == 0 { 0 } else { pick(u32::from(url.heartbeat), u32::from(tune.heartbeat)) as u16 };
    inner.frame_max.set(frame_max as usize);
    inner.heartbeat.set(heartbeat);
    out.clear();
    let tune_ok = connection::TuneOk { channel_max: tune.channel_max.clamp(1, 16).max(2), frame_max, heartbeat };
    frame::put_method(&mut out, 0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)));
    let open = connection::Open { virtual_host: url.vhost.as_str().into() };
    frame::put_method(&mut out, 0, AMQPClass::Connection(connection::AMQPMethod::Open(open)));
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    match read_method(io, &mut buf).await {
        Ok(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => {}
        Ok(other) => return Err(format!("expected connection.open-ok, got {other:?}")),
        Err(e) => return Err(format!("virtual host {:?}: {e}", url.vhost)),
    }
    out.clear();
    for ch in [WORK, PUBLISH] {
        frame::put_method(&mut out, ch, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    }
    frame::put_method(
        &mut out,
        PUBLISH,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })),
    );
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    for _ in 0..3 {
        read_method(io, &mut buf).await?;
    }
    Ok(buf)
}

async fn drive(c: Connection) {
    let inner = &c.inner;
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        if inner.closed.get() {
            c.fail_all(&c.lost());
            return;
        }
        let attempt = async {
            let mut io = rt::timeout_anywhere(inner.url.connect_timeout, connect(&inner.url))
                .await
                .ok_or_else(|| format!("no answer within {:?}", inner.url.connect_timeout))??;
            let buf = handshake(&mut io, inner).await?;
            Ok::<_, String>((io, buf))
        };
        match attempt.await {
            Ok((io, buf)) => {
                if failures > 0 {
                    tracing::info!("amqp {} ({}): reconnected", inner.url.redacted(), inner.role);
                }
                failures = 0;
                backoff = Duration::from_millis(100);
                inner.generation.set(inner.generation.get() + 1);
                inner.up.set(true);
                let now = Instant::now();
                inner.last_read.set(now);
                inner.last_write.set(now);
                // The hook's methods go first: they are queued before anything waiting is let
                // through (the outbox was emptied when the last connection ended).
                let hook = inner.on_connect.borrow_mut().take();
                if let Some(h) = hook {
                    h(&c);
                    *inner.on_connect.borrow_mut() = Some(h);
                }
                let (r, w) = futures_lite::io::split(io);
                let why = futures_lite::future::or(
                    read_loop(&c, r, buf),
                    futures_lite::future::or(write_loop(&c, w), heartbeat_loop(&c)),
                )
                .await;
                *inner.last_error.borrow_mut() = why.clone();
                if !inner.closed.get() {
                    tracing::warn!("amqp {} ({}): connection lost: {why}", inner.url.redacted(), inner.role);
                }
                let err = if why.starts_with("closed by the broker: ") {
                    AmqpError::Refused(why.trim_start_matches("closed by the broker: ").to_owned())
                } else {
                    c.lost()
                };
                c.fail_all(&err);
            }
            Err(e) => {
                *inner.last_error.borrow_mut() = format!("cannot connect: {e}");
                failures += 1;
                if failures == 1 || failures % 20 == 0 {
                    tracing::warn!("amqp {} ({}): cannot connect: {e}; retrying", inner.url.redacted(), inner.role);
                }
                let err = if e.contains("ACCESS_REFUSED") || e.starts_with("virtual host") {
                    AmqpError::Refused(e)
                } else {
                    c.lost()
                };
                c.fail_all(&err);
            }
        }
        if inner.closed.get() {
            return;
        }
        rt::sleep(backoff + Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2))).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn write_loop(c: &Connection, mut w: futures_lite::io::WriteHalf<Box<dyn Io>>) -> String {
    let inner = &c.inner;
    loop {
        let seen = inner.wake.epoch();
        if inner.closed.get() && inner.outbox.borrow().is_empty() && inner.confirms.borrow().is_empty() {
            let mut out = Vec::new();
            let close = connection::Close { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 };
            frame::put_method(&mut out, 0, AMQPClass::Connection(connection::AMQPMethod::Close(close)));
            let _ = w.write_all(&out).await;
            let _ = w.flush().await;
            return "closed".into();
        }
        let batch = std::mem::take(&mut *inner.outbox.borrow_mut());
        if batch.is_empty() {
            inner.wake.changed(seen).await;
            continue;
        }
        if let Err(e) = w.write_all(&batch).await {
            return e.to_string();
        }
        if let Err(e) = w.flush().await {
            return e.to_string();
        }
        inner.last_write.set(Instant::now());
        // Hand the buffer back for reuse when nothing was queued meanwhile.
        let mut out = inner.outbox.borrow_mut();
        if out.is_empty() {
            let mut batch = batch;
            batch.clear();
            *out = batch;
        }
    }
}

async fn heartbeat_loop(c: &Connection) -> String {
    let inner = &c.inner;
    loop {
        let hb = inner.heartbeat.get();
        if hb == 0 {
            futures_lite::future::pending::<()>().await;
        }
        let every = Duration::from_secs(u64::from(hb)) / 2;
        rt::sleep(every).await;
        if inner.last_read.get().elapsed() > Duration::from_secs(u64::from(hb) * 2) {
            return format!("no heartbeat from the broker for {}s", u64::from(hb) * 2);
        }
        if inner.last_write.get().elapsed() >= every {
            frame::put_heartbeat(&mut inner.outbox.borrow_mut());
            inner.wake.notify();
        }
    }
}

async fn read_loop(c: &Connection, mut r: futures_lite::io::ReadHalf<Box<dyn Io>>, mut buf: BytesMut) -> String {
    let inner = &c.inner;
    // Read into a chunk allocated once and copy what came: growing the frame buffer for each
    // read and reading into it zero-filled 64 KiB per read, a third of a drain's CPU.
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            let f = match frame::take(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return format!("protocol error: {e}"),
            };
            if let Err(why) = on_frame(c, f) {
                return why;
            }
        }
        let n = match r.read(&mut chunk).await {
            Ok(0) => return "closed by the server".into(),
            Ok(n) => n,
            Err(e) => return e.to_string(),
        };
        buf.extend_from_slice(&chunk[..n]);
        inner.last_read.set(Instant::now());
    }
}

/// Routes one frame; `Err` ends the connection with that reason.
fn on_frame(c: &Connection, f: Frame) -> Result<(), String> {
    let inner = &c.inner;
    match f {
        Frame::Heartbeat => Ok(()),
        Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) => {
            *inner.assembling.borrow_mut() =
                Some(Assembling { deliver: d, header: None, first: None, rest: BytesMut::new() });
            Ok(())
        }
        Frame::Header(h) => {
            let done = h.body_size == 0;
            if let Some(a) = inner.assembling.borrow_mut().as_mut() {
                a.header = Some(h);
            }
            if done {
                deliver(c);
            }
            Ok(())
        }
        Frame::Body(b) => {
            let complete = {
                let mut a = inner.assembling.borrow_mut();
                let Some(a) = a.as_mut() else { return Ok(()) };
                a.push(b);
                a.header.as_ref().is_some_and(|h| a.len() as u64 >= h.body_size)
            };
            if complete {
                deliver(c);
            }
            Ok(())
        }
        Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
            settle_confirms(inner, a.delivery_tag, a.multiple, Ok(()));
            Ok(())
        }
        Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Nack(n))) => {
            settle_confirms(inner, n.delivery_tag, n.multiple, Err(AmqpError::Nacked));
            Ok(())
        }
        Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel))) => {
            // consumer_cancel_notify: the queue went away (deleted, a node down). Reconnecting
            // re-declares and consumes again.
            Err(format!("the broker cancelled consumer {} (queue deleted or moved)", cancel.consumer_tag))
        }
        Frame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) => {
            tracing::warn!(
                "amqp {} ({}): the broker blocks publishing: {} (publishes wait until it unblocks)",
                inner.url.redacted(),
                inner.role,
                b.reason
            );
            Ok(())
        }
        Frame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_))) => {
            tracing::info!("amqp {} ({}): the broker unblocked publishing", inner.url.redacted(), inner.role);
            Ok(())
        }
        Frame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(close))) => {
            c.send(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})));
            Err(format!("closed by the broker: {}", close_text(&close)))
        }
        Frame::Method(ch, AMQPClass::Channel(channel::AMQPMethod::Close(close))) if (ch as usize) < 3 => {
            // A channel error (NOT_FOUND, PRECONDITION_FAILED, …) ends that channel only: the
            // method that caused it learns what RabbitMQ said, the channel is opened again, and
            // the rest of the connection (other callers' publishes, the consumer on the other
            // channel) goes on. RabbitMQ answers a channel's methods in order, so the culprit is
            // the first one unanswered; those queued behind it were dropped unrun and fail as a
            // lost connection does (their callers retry; they did nothing wrong).
            let why = format!("channel {ch}: {}", channel_close_text(&close));
            tracing::warn!("amqp {} ({}): {why}; reopening the channel", inner.url.redacted(), inner.role);
            let err = AmqpError::Refused(why.clone());
            let dropped = AmqpError::ConnectionLost(format!("{why}, before this method ran"));
            c.send(ch, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
            for (j, w) in inner.waiters[ch as usize].borrow_mut().drain(..).enumerate() {
                if let Waiter::Reply(tx) = w {
                    let _ = tx.try_send(Err(if j == 0 { err.clone() } else { dropped.clone() }));
                }
            }
            inner.waiters[ch as usize].borrow_mut().push_back(Waiter::Discard);
            c.send(ch, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
            if ch == PUBLISH {
                for (_, tx) in std::mem::take(&mut *inner.confirms.borrow_mut()) {
                    let _ = tx.try_send(Err(err.clone()));
                }
                inner.next_seq.set(1);
                c.send_sync(
                    PUBLISH,
                    AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })),
                );
            } else if ch == WORK {
                // The consumer went with the channel (RabbitMQ requeued what it held): its
                // acks are void, and the connect hook consumes again.
                inner.assembling.borrow_mut().take();
                inner.generation.set(inner.generation.get() + 1);
                let hook = inner.on_connect.borrow_mut().take();
                if let Some(h) = hook {
                    h(c);
                    *inner.on_connect.borrow_mut() = Some(h);
                }
            }
            Ok(())
        }
        Frame::Method(ch, m) => {
            let w = inner.waiters.get(ch as usize).and_then(|w| w.borrow_mut().pop_front());
            match w {
                Some(Waiter::Reply(tx)) => {
                    let _ = tx.try_send(Ok(m));
                }
                Some(Waiter::Discard) => {}
                None => tracing::debug!("amqp {}: unexpected {m:?} on channel {ch}", inner.url.redacted()),
            }
            Ok(())
        }
    }
}

fn deliver(c: &Connection) {
    let Some(a) = c.inner.assembling.borrow_mut().take() else { return };
    let incoming = Incoming {
        deliver: a.deliver,
        properties: a.header.map(|h| h.properties).unwrap_or_default(),
        body: Assembling::body(a.first, a.rest),
        generation: c.inner.generation.get(),
    };
    if let Some(h) = c.inner.on_delivery.borrow_mut().as_mut() {
        h(incoming);
    }
}

fn settle_confirms(inner: &Inner, tag: u64, multiple: bool, outcome: Result<(), AmqpError>) {
    let mut confirms = inner.confirms.borrow_mut();
    if multiple {
        let rest = confirms.split_off(&(tag + 1));
        for (_, tx) in std::mem::replace(&mut *confirms, rest) {
            let _ = tx.try_send(outcome.clone());
        }
    } else if let Some(tx) = confirms.remove(&tag) {
        let _ = tx.try_send(outcome);
    }
}
