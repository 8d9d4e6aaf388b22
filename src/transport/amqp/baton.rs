//! A lease on RabbitMQ for beats, and the runs recorded under it: a durable queue with
//! `x-single-active-consumer`, every beat consuming it with acks, and its messages (the baton)
//! held unacked by the one active consumer, which is the one that sends.
//!
//! - The messages record runs (`{"runs": {entry: state}}`), in the order they were published;
//!   RabbitMQ requeues a consumer's unacked messages in their places, so whoever holds them
//!   reads every run in order and the last record of an entry wins.
//! - When the holder's connection ends (a stop, a SIGKILL, or two missed heartbeats: the lease
//!   connection asks for one every [`HEARTBEAT`] s), RabbitMQ makes the next consumer active and
//!   delivers it everything. The new holder publishes a marker and leads only once the marker
//!   comes back: every run recorded before it has then been read.
//! - A run is recorded by publishing it (confirmed) on the lease connection before it is sent:
//!   a beat whose connection is gone cannot record, so it cannot send.
//! - The holder folds what it holds into one snapshot every [`COMPACT`] records and acks what came
//!   before it. An empty queue with no consumer is seeded with an empty record (two beats
//!   starting together may both seed; an empty record changes nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::{json, Map, Value};

use crate::config::AmqpUrl;
use crate::rt::{self, IoThread};

use super::connection::{held, Connection, Incoming, IoHeld, WORK};

/// The heartbeat (seconds) the lease connection asks for: a holder cut off from RabbitMQ loses
/// the lease after two missed ones.
const HEARTBEAT: u16 = 2;

/// Records held before they are folded into one snapshot.
const COMPACT: usize = 64;

#[derive(Default)]
struct Shared {
    /// The connection whose deliveries are held.
    generation: u64,
    /// The marker came back: this beat holds the lease.
    holding: bool,
    /// Deliveries held unacked on this connection.
    held: usize,
    /// The marker or snapshot published and not yet delivered back.
    marker: Option<String>,
    snapshot: Option<String>,
    /// Every entry's last recorded state.
    runs: Map<String, Value>,
}

/// A beat's place in the lease queue (see the module notes). Thread-safe; its connection lives
/// on the I/O executor and closes when this is dropped, handing the lease on.
pub struct AmqpBaton {
    shared: Arc<Mutex<Shared>>,
    conn: IoHeld,
    queue: String,
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn properties() -> AMQPProperties {
    AMQPProperties::default().with_content_type("application/json".into()).with_delivery_mode(2)
}

impl AmqpBaton {
    /// Joins the lease queue `queue` on `url`.
    pub(crate) fn join(url: &AmqpUrl, queue: &str) -> AmqpBaton {
        let mut url = url.clone();
        url.heartbeat = HEARTBEAT;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (s, q) = (shared.clone(), queue.to_owned());
        let conn = rt::block_on(IoThread::global().run(move || async move {
            let conn = Connection::open(url, "beat-lease");
            let kept = IoHeld::keep(conn.clone());
            let id = kept.id();
            let on_delivery = s.clone();
            let queue = q.clone();
            conn.on_delivery(move |d| delivered(&on_delivery, id, &queue, d));
            conn.on_connect(move |c| {
                {
                    // What the last connection held was requeued; the runs read stay known.
                    let mut g = lock(&s);
                    let runs = std::mem::take(&mut g.runs);
                    *g = Shared { generation: c.generation(), runs, ..Shared::default() };
                }
                let (c, q) = (c.clone(), q.clone());
                rt::spawn_local(async move {
                    if let Err(e) = consume(&c, &q).await {
                        tracing::error!("beat: joining the lease queue {q:?}: {e}");
                    }
                });
            });
            kept
        }));
        AmqpBaton { shared, conn, queue: queue.to_owned() }
    }

    /// Whether this beat holds the lease now.
    pub(crate) fn holds(&self) -> bool {
        let (s, id) = (self.shared.clone(), self.conn.id());
        rt::block_on(IoThread::global().run(move || async move {
            let s = lock(&s);
            held(id).is_some_and(|c| c.is_up() && c.generation() == s.generation) && s.holding
        }))
    }

    /// Records `entry`'s state under the lease; `Ok(false)`: this beat does not hold it.
    pub(crate) fn record(&self, entry: &str, state: &str) -> Result<bool, String> {
        let state: Value = serde_json::from_str(state).map_err(|e| e.to_string())?;
        let (s, id, entry, q) = (self.shared.clone(), self.conn.id(), entry.to_owned(), self.queue.clone());
        rt::block_on(IoThread::global().run(move || async move {
            let Some(c) = held(id) else { return Ok(false) };
            // Known before it is published, so a snapshot made meanwhile includes it (the record
            // is acked with what precedes the snapshot); put back if the publish fails.
            let (generation, before) = {
                let mut g = lock(&s);
                if !(g.holding && c.is_up() && c.generation() == g.generation) {
                    return Ok(false);
                }
                (g.generation, g.runs.insert(entry.clone(), state.clone()))
            };
            let body = json!({ "runs": { &entry: state } }).to_string();
            if let Err(e) = c.publish("", &q, properties(), body.as_bytes()).await {
                let mut g = lock(&s);
                match before {
                    Some(v) => g.runs.insert(entry, v),
                    None => g.runs.remove(&entry),
                };
                return Err(e.to_string());
            }
            let g = lock(&s);
            Ok(g.holding && c.generation() == generation)
        }))
    }

    /// Every entry's last recorded state, as JSON.
    pub(crate) fn recorded(&self) -> HashMap<String, String> {
        lock(&self.shared).runs.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
    }
}

async fn consume(c: &Connection, q: &str) -> Result<(), super::AmqpError> {
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    let qd = queue::Declare { queue: q.into(), durable: true, arguments: args, ..Default::default() };
    let ok = c.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(qd))).await?;
    if let AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) = ok {
        if ok.message_count == 0 && ok.consumer_count == 0 {
            c.publish("", q, properties(), br#"{"runs":{}}"#).await?;
        }
    }
    let consume = basic::Consume { queue: q.into(), consumer_tag: "beat".into(), ..Default::default() };
    c.call(WORK, AMQPClass::Basic(basic::AMQPMethod::Consume(consume))).await?;
    Ok(())
}

/// One message of the lease queue, on the I/O executor.
fn delivered(s: &Arc<Mutex<Shared>>, id: u64, q: &str, d: Incoming) {
    let Some(c) = held(id) else { return };
    let tag = d.deliver.delivery_tag;
    let msg: Map<String, Value> = serde_json::from_slice(&d.body).unwrap_or_default();
    let mut g = lock(s);
    if d.generation != g.generation {
        return;
    }
    g.held += 1;
    if let Some(Value::Object(runs)) = msg.get("runs") {
        for (k, v) in runs {
            g.runs.insert(k.clone(), v.clone());
        }
    }
    let id_of = msg.get("id").and_then(Value::as_str);
    let mut took_over = false;
    if id_of.is_some() && id_of == g.marker.as_deref() {
        g.marker = None;
        g.holding = true;
        took_over = true;
    }
    if id_of.is_some() && id_of == g.snapshot.as_deref() {
        // Everything before the snapshot is in it.
        g.snapshot = None;
        if g.held > 1 {
            c.send(
                WORK,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag - 1, multiple: true })),
            );
        }
        g.held = 1;
    }
    let publish = if !g.holding && g.marker.is_none() {
        let id = uuid::Uuid::new_v4().to_string();
        g.marker = Some(id.clone());
        Some(json!({ "id": id, "marker": true }))
    } else if g.holding && g.snapshot.is_none() && (g.held > COMPACT || (took_over && g.held > 1)) {
        let id = uuid::Uuid::new_v4().to_string();
        g.snapshot = Some(id.clone());
        Some(json!({ "id": id, "runs": g.runs }))
    } else {
        None
    };
    drop(g);
    if let Some(body) = publish {
        let q = q.to_owned();
        rt::spawn_local(async move {
            if let Err(e) = c.publish("", &q, properties(), body.to_string().as_bytes()).await {
                tracing::warn!("beat: publishing to the lease queue {q:?}: {e}");
            }
        });
    }
}
