//! Shard-local connection registry: one pipelined writer connection per Redis server per
//! executor thread, shared by everything on that shard (acks, result writes, publishes of
//! subtasks), so their commands share write batches.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{Connection, RedisUrl};

thread_local! {
    static WRITERS: RefCell<HashMap<RedisUrl, Connection>> = RefCell::new(HashMap::new());
}

/// This executor's writer connection to `url` (opened on first use). Only on an executor.
pub(crate) fn writer(url: &RedisUrl) -> Connection {
    WRITERS
        .with(|w| w.borrow_mut().entry(url.clone()).or_insert_with(|| Connection::open(url.clone(), "write")).clone())
}
