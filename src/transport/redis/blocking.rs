//! Blocking RESP connections for threads outside the runtime: a plain `delay()` from a web
//! handler or a `main` writes its LPUSH and reads the reply on its own thread, as redis-py does.
//! Handing the command to the I/O thread and the reply back costs two sleeping-thread wake-ups,
//! each tens of µs on a VM — most of a blocking send's time. Async sends still go through the I/O
//! thread (they must not block their executor).
//!
//! Connections are pooled per broker; one that fails is dropped, and the command is tried once
//! more on a fresh connection (kombu retries a publish on a connection error too).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame};

use super::{RedisAddr, RedisError, RedisUrl};

/// How long a blocking connect or command waits for Redis before it reports the connection lost.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per broker: as many as threads sent at once, up to this (more
/// concurrent senders than that open and close a connection per send).
const POOLED: usize = 64;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Connects to the first address of `addr` that answers within [`IO_TIMEOUT`] (an unreachable
/// host would otherwise hold the sending thread for the system's TCP timeout, minutes).
fn connect(addr: impl ToSocketAddrs) -> Result<TcpStream, String> {
    let mut last = "no address".to_owned();
    for a in addr.to_socket_addrs().map_err(|e| e.to_string())? {
        match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// One blocking connection, after AUTH and SELECT.
struct Blocking {
    io: Box<dyn Stream>,
    buf: BytesMut,
}

impl Blocking {
    fn open(url: &RedisUrl) -> Result<Self, String> {
        let mut io: Box<dyn Stream> = match &url.addr {
            RedisAddr::Tcp(host, port) => {
                let s = connect((host.as_str(), *port))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                match &url.tls {
                    None => Box::new(s),
                    Some(t) => {
                        let config = crate::transport::tls::client_config(t)?;
                        let name = crate::transport::tls::server_name(host)?;
                        let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
                        Box::new(rustls::StreamOwned::new(conn, s))
                    }
                }
            }
            RedisAddr::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                Box::new(s)
            }
        };
        futures_lite::future::block_on(super::connection::handshake(
            &mut futures_lite::io::AssertAsync::new(&mut io),
            url,
        ))?;
        Ok(Blocking { io, buf: BytesMut::with_capacity(512) })
    }

    /// Writes `cmds` in one write and reads one reply per command, in order.
    fn pipeline(&mut self, cmds: &[&[&[u8]]]) -> Result<Vec<BytesFrame>, String> {
        let mut out = BytesMut::new();
        for args in cmds {
            let frames: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
            extend_encode_borrowed(&mut out, &BorrowedFrame::Array(&frames), false)
                .expect("encoding into a growable buffer cannot fail");
        }
        self.io.write_all(&out).and_then(|()| self.io.flush()).map_err(|e| e.to_string())?;
        let mut replies = Vec::with_capacity(cmds.len());
        let mut chunk = [0u8; 512];
        while replies.len() < cmds.len() {
            match decode_bytes_mut(&mut self.buf).map_err(|e| format!("protocol error: {e:?}"))? {
                Some((frame, _, _)) => replies.push(frame),
                None => match self.io.read(&mut chunk).map_err(|e| e.to_string())? {
                    0 => return Err("closed by server".into()),
                    n => self.buf.extend_from_slice(&chunk[..n]),
                },
            }
        }
        Ok(replies)
    }
}

/// A broker's pool of blocking connections.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Blocking>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// Runs `cmds` pipelined on a pooled connection (a fresh one if none is idle or the pooled
    /// one fails); an error reply to any of them is the error.
    pub(crate) fn pipeline(&self, url: &RedisUrl, cmds: &[&[&[u8]]]) -> Result<Vec<BytesFrame>, RedisError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let replies = match pooled.map(|mut c| (c.pipeline(cmds), c)) {
            Some((Ok(r), c)) => Ok((r, c)),
            // A pooled connection may have gone stale (Redis restarted, idle timeout): once more
            // on a fresh one.
            _ => Blocking::open(url).and_then(|mut c| Ok((c.pipeline(cmds)?, c))),
        };
        let (replies, conn) = replies.map_err(|e| RedisError::ConnectionLost(format!("{}: {e}", url.redacted())))?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOLED {
            idle.push(conn);
        }
        drop(idle);
        match replies.iter().find_map(|r| if let BytesFrame::Error(e) = r { Some(e.to_string()) } else { None }) {
            Some(e) => Err(RedisError::Server(e)),
            None => Ok(replies),
        }
    }
}

/// Connects to `url` (AUTH, SELECT) and PINGs it once, on this thread: the start-up check.
pub(crate) fn ping(url: &RedisUrl) -> Result<(), RedisError> {
    Pool::default().pipeline(url, &[&[b"PING"]]).map(|_| ())
}
