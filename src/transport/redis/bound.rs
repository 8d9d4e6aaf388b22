//! A queue bound to a direct exchange and read until dropped, as kombu's `Mailbox` reads its
//! reply queue on Redis: the binding `routing_key SEP SEP queue` joins the exchange's
//! `_kombu.binding.<exchange>` set (so a worker's `publish_direct` finds it), and the queue's
//! list is popped with `BRPOP` on a connection of its own. Dropping it removes the binding and
//! the list, which kombu leaves to expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_protocol::resp2::types::BytesFrame;

use crate::rt::{self, IoThread};

use super::{frame_bytes, writer, Connection, Keys, RedisUrl};

/// A live reply-queue subscription.
pub struct BoundQueue {
    rx: flume::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    url: RedisUrl,
    set: String,
    member: String,
    list: String,
}

impl BoundQueue {
    /// Binds `queue` to `exchange` with `routing_key` and starts reading it; returns once the
    /// binding is in Redis (a reply published after this returns is not lost).
    pub(crate) fn start(url: &RedisUrl, keys: &Keys, exchange: &str, routing_key: &str, queue: &str) -> BoundQueue {
        let (set, member, list) =
            (keys.binding_key(exchange), keys.binding_member(routing_key, queue), keys.queue_key(queue, 0));
        let (tx, rx) = flume::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let job = {
            let (url, set, member, list, stop) = (url.clone(), set.clone(), member.clone(), list.clone(), stop.clone());
            move || async move {
                if let Err(e) = writer(&url).call(&[b"SADD", set.as_bytes(), member.as_bytes()]).await {
                    tracing::warn!("binding the reply queue {list:?}: {e}");
                }
                let conn = Connection::open(url, "reply");
                rt::spawn_local(async move {
                    while !stop.load(Ordering::Acquire) {
                        match conn.call(&[b"BRPOP", list.as_bytes(), b"1"]).await {
                            Ok(BytesFrame::Array(kv)) => {
                                if let Some(data) = kv.get(1).and_then(frame_bytes) {
                                    let _ = tx.send(data.to_vec());
                                }
                            }
                            Ok(_) => {}
                            Err(_) => rt::sleep(Duration::from_millis(100)).await,
                        }
                    }
                    conn.close();
                });
            }
        };
        rt::block_on(IoThread::global().run(job));
        BoundQueue { rx, stop, url: url.clone(), set, member, list }
    }

    /// The next envelope, from any executor; `None` once closed.
    pub async fn recv_async(&self) -> Option<Vec<u8>> {
        self.rx.recv_async().await.ok()
    }
}

impl Drop for BoundQueue {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let (url, set, member, list) = (self.url.clone(), self.set.clone(), self.member.clone(), self.list.clone());
        // Queued at once; nobody needs to wait for it.
        drop(IoThread::global().run(move || async move {
            let w = writer(&url);
            let _ = w.call(&[b"SREM", set.as_bytes(), member.as_bytes()]).await;
            let _ = w.call(&[b"DEL", list.as_bytes()]).await;
        }));
    }
}
