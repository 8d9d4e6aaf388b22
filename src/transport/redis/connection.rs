//! One RESP connection on a shard: commands are encoded into an outbox and written in batches by
//! a writer task; a reader task decodes replies (redis-protocol) and hands each to the command
//! that asked, in order. Many commands issued in one scheduling round go out in one write: that
//! is the pipelining, and it needs no timer.
//!
//! The connection reconnects by itself with exponential backoff and jitter; commands pending when
//! it drops fail with [`RedisError::ConnectionLost`] so callers can retry or let the visibility
//! timeout redeliver. A subscriber connection routes every frame to a push handler instead.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame};

use crate::rt::{self, Notify};

use super::{RedisAddr, RedisUrl};

/// A Redis command failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    /// No connection, or it broke.
    #[error("connection to {0}")]
    ConnectionLost(String),
    /// Redis answered with an error; its words.
    #[error("redis error: {0}")]
    Server(String),
    /// Redis sent something that is not RESP.
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

enum Waiter {
    Discard,
    Reply(flume::Sender<Result<BytesFrame, RedisError>>),
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

type PushHandler = Box<dyn FnMut(BytesFrame)>;
type ConnectHook = Box<dyn Fn(&Connection)>;

struct Inner {
    url: RedisUrl,
    role: &'static str,
    outbox: RefCell<BytesMut>,
    waiters: RefCell<VecDeque<Waiter>>,
    wake: Notify,
    closed: Cell<bool>,
    push: RefCell<Option<PushHandler>>,
    /// Set for subscriber connections: replies are pushes, no command waits for one.
    subscriber: bool,
    on_connect: RefCell<Option<ConnectHook>>,
    /// Why the last connection attempt failed or the last connection ended.
    last_error: RefCell<String>,
}

/// A shard-local Redis connection handle; clones share the connection.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Rc<Inner>,
}

impl Connection {
    /// Opens a command connection (it connects in the background).
    pub(crate) fn open(url: RedisUrl, role: &'static str) -> Connection {
        Self::start(url, role, None)
    }

    /// Opens a subscriber connection: every frame goes to `on_push`.
    pub(crate) fn open_subscriber(
        url: RedisUrl,
        role: &'static str,
        on_push: impl FnMut(BytesFrame) + 'static,
    ) -> Connection {
        Self::start(url, role, Some(Box::new(on_push)))
    }

    fn start(url: RedisUrl, role: &'static str, push: Option<PushHandler>) -> Connection {
        let c = Connection {
            inner: Rc::new(Inner {
                url,
                role,
                outbox: RefCell::new(BytesMut::with_capacity(16 * 1024)),
                waiters: RefCell::new(VecDeque::new()),
                wake: Notify::new(),
                closed: Cell::new(false),
                subscriber: push.is_some(),
                push: RefCell::new(push),
                on_connect: RefCell::new(None),
                last_error: RefCell::new("lost".to_owned()),
            }),
        };
        rt::spawn_local(drive(c.clone()));
        c
    }

    /// Runs `hook` after every (re)connect, before queued commands are written: re-subscribe,
    /// re-read what may have been missed.
    pub(crate) fn on_connect(&self, hook: impl Fn(&Connection) + 'static) {
        *self.inner.on_connect.borrow_mut() = Some(Box::new(hook));
    }

    /// Stops the connection after what is queued.
    pub(crate) fn close(&self) {
        self.inner.closed.set(true);
        self.inner.wake.notify();
    }

    fn encode(&self, args: &[&[u8]]) {
        let frames: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        extend_encode_borrowed(&mut self.inner.outbox.borrow_mut(), &BorrowedFrame::Array(&frames), false)
            .expect("encoding into a growable buffer cannot fail");
    }

    /// Queues a command whose reply is not needed (acks, publishes of results, subscribes).
    pub(crate) fn send(&self, args: &[&[u8]]) {
        self.encode(args);
        if !self.inner.subscriber {
            self.inner.waiters.borrow_mut().push_back(Waiter::Discard);
        }
        self.inner.wake.notify();
    }

    /// Queues a command and returns its reply.
    pub(crate) fn call(
        &self,
        args: &[&[u8]],
    ) -> impl std::future::Future<Output = Result<BytesFrame, RedisError>> + 'static {
        let (tx, rx) = flume::bounded(1);
        self.encode(args);
        self.inner.waiters.borrow_mut().push_back(Waiter::Reply(tx));
        self.inner.wake.notify();
        let inner = self.inner.clone();
        async move {
            match rx.recv_async().await {
                Ok(Ok(BytesFrame::Error(e))) => Err(RedisError::Server(e.to_string())),
                Ok(r) => r,
                Err(_) => {
                    Err(RedisError::ConnectionLost(format!("{}: {}", inner.url.redacted(), inner.last_error.borrow())))
                }
            }
        }
    }

    fn fail_all(&self) {
        let lost =
            RedisError::ConnectionLost(format!("{}: {}", self.inner.url.redacted(), self.inner.last_error.borrow()));
        self.inner.outbox.borrow_mut().clear();
        for w in self.inner.waiters.borrow_mut().drain(..) {
            if let Waiter::Reply(tx) = w {
                let _ = tx.try_send(Err(lost.clone()));
            }
        }
    }
}

async fn connect(url: &RedisUrl) -> std::io::Result<Box<dyn Io>> {
    Ok(match &url.addr {
        RedisAddr::Tcp(host, port) => {
            let s = rt::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let _ = s.set_nodelay(true);
            match &url.tls {
                None => Box::new(s),
                Some(t) => {
                    let config = crate::transport::tls::client_config(t).map_err(std::io::Error::other)?;
                    let name = crate::transport::tls::server_name(host).map_err(std::io::Error::other)?;
                    Box::new(futures_rustls::TlsConnector::from(config).connect(name, s).await?)
                }
            }
        }
        RedisAddr::Unix(path) => {
            Box::new(rt::net::UnixStream::connect(path).await.map_err(|e| std::io::Error::other(e.to_string()))?)
        }
    })
}

/// AUTH and SELECT, answered before anything else is written.
pub(super) async fn handshake(io: &mut (impl AsyncRead + AsyncWrite + Unpin), url: &RedisUrl) -> Result<(), String> {
    let mut out = BytesMut::new();
    let mut expected = 0;
    let mut push = |args: &[&[u8]]| {
        let frames: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        extend_encode_borrowed(&mut out, &BorrowedFrame::Array(&frames), false).expect("encode");
        expected += 1;
    };
    match (&url.username, &url.password) {
        (Some(u), Some(p)) => push(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
        (None, Some(p)) => push(&[b"AUTH", p.as_bytes()]),
        _ => {}
    }
    let db = url.db.to_string();
    if url.db != 0 {
        push(&[b"SELECT", db.as_bytes()]);
    }
    if expected == 0 {
        return Ok(());
    }
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(256);
    let mut got = 0;
    while got < expected {
        let mut chunk = [0u8; 256];
        let n = io.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during AUTH/SELECT".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some((frame, _, _)) = decode_bytes_mut(&mut buf).map_err(|e| e.to_string())? {
            if let BytesFrame::Error(e) = frame {
                return Err(format!("AUTH/SELECT refused: {e}"));
            }
            got += 1;
        }
    }
    Ok(())
}

async fn drive(c: Connection) {
    let inner = &c.inner;
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0u32;
    loop {
        if inner.closed.get() {
            c.fail_all();
            return;
        }
        let attempt = async {
            let mut io = connect(&inner.url).await.map_err(|e| e.to_string())?;
            handshake(&mut io, &inner.url).await?;
            Ok::<_, String>(io)
        };
        match attempt.await {
            Ok(io) => {
                if failures > 0 {
                    tracing::info!("redis {} ({}): reconnected", inner.url.redacted(), inner.role);
                }
                failures = 0;
                backoff = Duration::from_millis(50);
                let hook = inner.on_connect.borrow_mut().take();
                if let Some(h) = hook {
                    h(&c);
                    *inner.on_connect.borrow_mut() = Some(h);
                }
                let (r, w) = futures_lite::io::split(io);
                let why = futures_lite::future::or(read_loop(&c, r), write_loop(&c, w)).await;
                *inner.last_error.borrow_mut() = format!("connection lost: {why}");
                if !inner.closed.get() {
                    tracing::warn!("redis {} ({}): connection lost: {why}", inner.url.redacted(), inner.role);
                }
                c.fail_all();
            }
            Err(e) => {
                *inner.last_error.borrow_mut() = format!("cannot connect: {e}");
                failures += 1;
                if failures == 1 || failures % 20 == 0 {
                    tracing::warn!("redis {} ({}): cannot connect: {e}; retrying", inner.url.redacted(), inner.role);
                }
                c.fail_all();
            }
        }
        if inner.closed.get() {
            return;
        }
        let jitter = Duration::from_micros(fastrand_u64(backoff.as_micros() as u64 / 2 + 1));
        rt::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn fastrand_u64(bound: u64) -> u64 {
    // xorshift seeded from the clock: jitter only needs to differ between connections.
    let mut x =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % bound.max(1)
}

async fn write_loop(c: &Connection, mut w: futures_lite::io::WriteHalf<Box<dyn Io>>) -> String {
    let inner = &c.inner;
    loop {
        let seen = inner.wake.epoch();
        if inner.closed.get() && inner.outbox.borrow().is_empty() && inner.waiters.borrow().is_empty() {
            return "closed".into();
        }
        let batch = {
            let mut out = inner.outbox.borrow_mut();
            if out.is_empty() {
                None
            } else {
                Some(out.split().freeze())
            }
        };
        match batch {
            Some(b) => {
                if let Err(e) = w.write_all(&b).await {
                    return e.to_string();
                }
                if let Err(e) = w.flush().await {
                    return e.to_string();
                }
            }
            None => inner.wake.changed(seen).await,
        }
    }
}

async fn read_loop(c: &Connection, mut r: futures_lite::io::ReadHalf<Box<dyn Io>>) -> String {
    let inner = &c.inner;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) => return "closed by server".into(),
            Ok(n) => n,
            Err(e) => return e.to_string(),
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let frame = match decode_bytes_mut(&mut buf) {
                Ok(Some((f, _, _))) => f,
                Ok(None) => break,
                Err(e) => return format!("protocol error: {e:?}"),
            };
            let mut push = inner.push.borrow_mut();
            if let Some(p) = push.as_mut() {
                p(frame);
                continue;
            }
            drop(push);
            let waiter = inner.waiters.borrow_mut().pop_front();
            match waiter {
                Some(Waiter::Reply(tx)) => {
                    let _ = tx.try_send(Ok(frame));
                }
                Some(Waiter::Discard) => {
                    if let BytesFrame::Error(e) = frame {
                        tracing::warn!("redis {} ({}): {e}", inner.url.redacted(), inner.role);
                    }
                }
                None => return "a reply arrived that no command asked for".into(),
            }
        }
    }
}

/// Reads a bulk or simple string reply as bytes.
pub(crate) fn frame_bytes(f: &BytesFrame) -> Option<&[u8]> {
    match f {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => Some(b),
        _ => None,
    }
}
