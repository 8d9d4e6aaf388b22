//! The shard that popped a Redis delivery settles it, wherever it ran. Its writer connection
//! sent the delivery's stash (`HSET unacked` / `ZADD unacked_index`), and Redis orders commands
//! only within one connection: an ack sent from a thief shard's connection could reach Redis
//! before the stash and leave the entry in `unacked` for ever, to run a second time after
//! kombu's visibility restore (issue 14: 10,187 of 200,000 tasks). So every settlement — local or
//! from another shard — is queued here, and the owner's task sends them on its writer, the acks of
//! one round as one `ZREM` and one `HDEL` (kombu's ack, batched).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::protocol::TaskMessage;
use crate::rt;
use crate::transport::delivery::{DeliveryKey, Settler};
use crate::transport::inbox::Inbox;

use super::{Connection, Keys};

/// Atomically takes a message out of the unacked bookkeeping and pushes it back to its queue
/// (consumed next). Returns 0 when the tag was already settled by someone else.
const RESTORE_LUA: &str = "if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then \
    redis.call('ZREM', KEYS[2], ARGV[1]) redis.call('RPUSH', KEYS[3], ARGV[2]) return 1 end return 0";

/// How a delivery ends on the broker.
#[derive(Debug)]
pub(crate) enum Settlement {
    /// Done (or rejected without requeue: the same on Redis): out of the unacked bookkeeping.
    Ack { tag: String },
    /// Back to its queue, consumed next, marked redelivered.
    Requeue { tag: String, queue: String, priority: u8, raw: Bytes },
    /// Left in `unacked`: the visibility restore delivers it again.
    Abandon,
}

/// One consumer's settlement inbox, shared by every shard that may hold its deliveries.
#[derive(Debug)]
pub(crate) struct Owner {
    inbox: Inbox<Settlement>,
}

impl Owner {
    /// An inbox for a consumer on the current shard, with the task that empties it there onto
    /// `conn`, the shard's writer.
    pub(crate) fn start(conn: Connection, keys: Keys) -> Arc<Owner> {
        let owner = Arc::new(Owner { inbox: Inbox::new() });
        rt::spawn_local(serve(owner.clone(), conn, keys));
        owner
    }

    /// Counts `n` deliveries popped: each must come back through the [`Settler`] calls.
    pub(crate) fn popped(&self, n: usize) {
        self.inbox.taken(n);
    }

    /// Queues a settlement for the owner's writer; from any thread.
    pub(crate) fn settle(&self, s: Settlement) {
        self.inbox.put(s);
    }

    /// Waits until every delivery popped was settled on the owner's writer (deliveries stolen by
    /// other shards included), then ends the owner's task. On the owner's shard.
    pub(crate) async fn close(&self) {
        self.inbox.close().await
    }
}

/// The owner's task: drains the inbox each time it runs, so the settlements of one scheduling
/// round share one write.
async fn serve(owner: Arc<Owner>, conn: Connection, keys: Keys) {
    let (index, unacked) = (keys.unacked_index(), keys.unacked());
    let mut tags: Vec<String> = Vec::new();
    loop {
        let seen = owner.inbox.epoch();
        let mut settled = 0;
        while let Some(s) = owner.inbox.next() {
            settled += 1;
            match s {
                Settlement::Ack { tag } => tags.push(tag),
                Settlement::Requeue { tag, queue, priority, raw } => {
                    // Atomically out of the unacked bookkeeping and back to the consuming end.
                    let marked = mark_redelivered(&raw).unwrap_or_else(|| raw.to_vec());
                    conn.send(&[
                        b"EVAL",
                        RESTORE_LUA.as_bytes(),
                        b"3",
                        unacked.as_bytes(),
                        index.as_bytes(),
                        keys.queue_key(&queue, priority).as_bytes(),
                        tag.as_bytes(),
                        &marked,
                    ]);
                }
                Settlement::Abandon => {}
            }
        }
        // Redis takes up to a few thousand arguments per command comfortably; batches here are
        // at most what the shards held (prefetch), so one command of each almost always.
        for chunk in tags.chunks(1024) {
            let mut zrem: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 2);
            zrem.extend([b"ZREM".as_slice(), index.as_bytes()]);
            zrem.extend(chunk.iter().map(|t| t.as_bytes()));
            conn.send(&zrem);
            zrem[0] = b"HDEL";
            zrem[1] = unacked.as_bytes();
            conn.send(&zrem);
        }
        tags.clear();
        if settled > 0 {
            // Counted only now that the commands are queued on the writer, after the stash.
            owner.inbox.settled(settled);
            continue;
        }
        if owner.inbox.finished() {
            return;
        }
        owner.inbox.changed(seen).await;
    }
}

impl Settler for Owner {
    fn ack(&self, key: DeliveryKey) {
        self.inbox.put(Settlement::Ack { tag: key.tag });
    }

    /// Redis requeues the message as it arrived (marked redelivered), not the decoded one.
    fn requeue(&self, key: DeliveryKey, queue: &str, _: Box<TaskMessage>) {
        let DeliveryKey { tag, raw, priority, .. } = key;
        self.inbox.put(Settlement::Requeue { tag, queue: queue.to_owned(), priority, raw });
    }

    fn abandon(&self, _: DeliveryKey) {
        self.inbox.put(Settlement::Abandon);
    }
}

/// Sets `headers.redelivered` and `properties.delivery_info.redelivered`, as kombu does when it
/// restores a message.
pub(super) fn mark_redelivered(raw: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(raw).ok()?;
    v.get_mut("headers")?.as_object_mut()?.insert("redelivered".into(), Value::Bool(true));
    v.get_mut("properties")?.get_mut("delivery_info")?.as_object_mut()?.insert("redelivered".into(), Value::Bool(true));
    serde_json::to_vec(&v).ok()
}
