//! The event dispatcher (`celery.events.EventDispatcher`): events on the `celeryev` exchange
//! (topic on RabbitMQ, Redis PUB/SUB channels `/<db>.celeryev/<routing key>`), headers
//! `{"hostname": …}`, delivery mode 1, JSON. Worker events leave one by one, at once; task
//! events sent on a shard wait for the end of its current run of tasks (`rt::defer`) or for 24 of
//! them, and leave as one `task.multi` message whose body is their list, as Celery 5.5+ buffers
//! them. Sent from anywhere else, a task event leaves at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::protocol::{Envelope, Event, Properties};
use crate::rt;
use crate::transport::Broker;

use super::Clock;

/// The exchange events go to (`event_exchange`).
pub(super) const EXCHANGE: &str = "celeryev";

/// Task events one shard gathers before they leave without waiting for the end of its run.
const BATCH: usize = 24;

/// Sends one node's events.
pub struct Dispatcher {
    broker: Broker,
    hostname: Arc<str>,
    clock: Arc<Clock>,
    task_events: AtomicBool,
    utcoffset: f64,
    pid: u32,
}

/// Task events gathered on one shard, per dispatcher (by address), not sent yet.
type Gathered = HashMap<usize, (Arc<Dispatcher>, Vec<Event>)>;

thread_local! {
    static PENDING: RefCell<Gathered> = RefCell::new(HashMap::new());
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "events::Dispatcher({}, task events {})", self.hostname, self.task_events())
    }
}

/// Hours west of UTC now, as Celery 5.7 writes `utcoffset` (a float).
fn utcoffset() -> f64 {
    -f64::from(chrono::Local::now().offset().local_minus_utc()) / 3600.0
}

impl Dispatcher {
    /// A dispatcher for node `hostname` on `broker`; task events on from the start or not.
    pub fn new(broker: Broker, hostname: &str, clock: Arc<Clock>, task_events: bool) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            broker,
            hostname: Arc::from(hostname),
            clock,
            task_events: AtomicBool::new(task_events),
            utcoffset: utcoffset(),
            pid: std::process::id(),
        })
    }

    /// The node the events come from.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The clock the events carry.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Whether task events are sent.
    pub fn task_events(&self) -> bool {
        self.task_events.load(Ordering::Relaxed)
    }

    /// Turns task events on or off (`enable_events` / `disable_events`); returns what they were.
    pub fn set_task_events(&self, on: bool) -> bool {
        self.task_events.swap(on, Ordering::Relaxed)
    }

    /// An event of type `kind` from this node, with the dispatcher's fields and a tick of the clock.
    pub fn event(&self, kind: &str, fields: Map<String, Value>) -> Event {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Event {
            kind: kind.to_owned(),
            hostname: self.hostname.to_string(),
            timestamp: now.as_secs_f64(),
            utcoffset: self.utcoffset,
            pid: self.pid,
            clock: self.clock.forward(),
            fields,
        }
    }

    /// Sends an event now, as one message (worker events).
    pub fn send(&self, kind: &str, fields: Map<String, Value>) {
        let e = self.event(kind, fields);
        let body = serde_json::to_vec(&e).expect("an event is JSON");
        self.publish(&e.routing_key(), &body);
    }

    /// Sends a task event if task events are on: on a shard with the others of its run of tasks.
    pub fn send_task(self: &Arc<Self>, kind: &str, fields: Map<String, Value>) {
        if !self.task_events() {
            return;
        }
        if !rt::on_executor() {
            return self.send(kind, fields);
        }
        let e = self.event(kind, fields);
        let key = Arc::as_ptr(self) as usize;
        let (first, full) = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let (_, events) = p.entry(key).or_insert_with(|| (self.clone(), Vec::new()));
            events.push(e);
            (events.len() == 1, events.len() >= BATCH)
        });
        if full {
            flush(key);
        } else if first {
            rt::defer(move || flush(key));
        }
    }

    fn publish(&self, routing_key: &str, body: &[u8]) {
        let mut headers = Map::new();
        headers.insert("hostname".into(), Value::String(self.hostname.to_string()));
        let props = Properties { delivery_mode: 1, ..Default::default() };
        let env = Envelope::json(headers, props, body, EXCHANGE, routing_key);
        if let Err(e) = self.broker.publish_fanout(EXCHANGE, routing_key, env.encode()) {
            tracing::debug!("event {routing_key} not sent: {e}");
        }
    }
}

/// Sends what this shard gathered for one dispatcher, as one `task.multi` message.
fn flush(key: usize) {
    let Some((d, events)) = PENDING.with(|p| p.borrow_mut().remove(&key)) else { return };
    if events.is_empty() {
        return;
    }
    let body = serde_json::to_vec(&events).expect("events are JSON");
    d.publish("task.multi", &body);
}
