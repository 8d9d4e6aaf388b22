//! The event receiver (`celery.events.EventReceiver`): every event on the `celeryev` exchange,
//! from celeriac and Python senders alike, one event or a `task.multi` list per message.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::protocol::{Envelope, Event};
use crate::rt;
use crate::transport::{Broker, Fanout};

use super::dispatcher::EXCHANGE;
use super::Clock;

/// A live subscription to the events; ends when dropped.
pub struct Receiver {
    fanout: Fanout,
    clock: Arc<Clock>,
}

impl Receiver {
    /// Subscribes to every event on `broker`; returns once the subscription is live (blocks
    /// briefly: call it off the shards). Received clocks adjust `clock`.
    pub fn new(broker: &Broker, clock: Arc<Clock>) -> Receiver {
        Receiver { fanout: broker.subscribe_topic(EXCHANGE, "#"), clock }
    }

    /// Subscribes to the worker events only (`worker.#`: online, heartbeat, offline, elections),
    /// as Celery's gossip does; memory:// has no routing keys and delivers every event.
    pub fn workers(broker: &Broker, clock: Arc<Clock>) -> Receiver {
        Receiver { fanout: broker.subscribe_topic(EXCHANGE, "worker.#"), clock }
    }

    /// The events of the next message; `None` once the subscription ended. A message that is not
    /// an event is logged and skipped.
    pub async fn next(&self) -> Option<Vec<Event>> {
        loop {
            let raw = self.fanout.recv_async().await?;
            match decode(&raw) {
                Ok(events) => {
                    for e in &events {
                        self.clock.adjust(e.clock);
                    }
                    return Some(events);
                }
                Err(e) => tracing::warn!("Ignoring a malformed event message: {e}"),
            }
        }
    }

    /// [`Receiver::next`] from a plain thread, waiting at most `within`: `Some(vec![])` when
    /// nothing came.
    pub fn next_within(&self, within: Duration) -> Option<Vec<Event>> {
        rt::block_on(rt::timeout_anywhere(within, self.next())).unwrap_or(Some(Vec::new()))
    }
}

fn decode(raw: &[u8]) -> Result<Vec<Event>, String> {
    let env = Envelope::<Map<String, Value>>::decode(raw).map_err(|e| e.to_string())?;
    let body = env.body().map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("event body: {e}"))?;
    Event::decode_batch(&v).map_err(|e| format!("event body: {e}"))
}
