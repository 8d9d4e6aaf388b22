//! Gossip (`celery/worker/consumer/gossip.py`): the worker listens to the other workers' events
//! (`worker.#` on `celeryev`), keeps the Lamport clock in step with theirs, knows which peers are
//! alive (a heartbeat within twice their `freq`; one that stops is logged as
//! `missed heartbeat from …` at the next check, every 5 s), and holds Celery's elections: the
//! `election` control command makes every worker send `worker-elect`, each answers every one with
//! `worker-elect-ack`, and the candidate with the lowest clock (then the lowest `hostname.pid`)
//! wins and runs the action (topic `task`: send the signature). On Redis and RabbitMQ, as Celery;
//! off with `--without-gossip`.
//!
//! When to count: Celery decides at as many acks as peers are alive, which may come before a
//! peer's own `worker-elect` (then two workers can both win, or its `sort_heap` fails on a single
//! candidate). Here a worker decides once every peer alive, and itself, acked: a worker sends its
//! `worker-elect` before its acks on the same connection, and both brokers keep one publisher's
//! order, so by then every candidate that stood is known. A peer alive that does not gossip never
//! acks: after 30 s the election is given up with a warning naming who stayed silent (Celery's
//! waits forever).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::events::Receiver;
use crate::protocol::{Event, Signature};
use crate::rt;

use super::peers::Candidate;
use super::shared::WorkerShared;

/// Seconds between the checks for peers whose heartbeats stopped (Celery's gossip `interval`).
const INTERVAL: Duration = Duration::from_secs(5);

/// Follows the other workers' events until the worker stops running (on the first shard).
pub(crate) async fn serve(shared: Arc<WorkerShared>, index: usize, receiver: Receiver) {
    let wake = &shared.steal.wake[index];
    let mut next_check = Instant::now() + INTERVAL;
    loop {
        let seen = wake.epoch();
        if !shared.lifecycle.is_running() {
            break;
        }
        if Instant::now() >= next_check {
            shared.peers.drop_lost();
            next_check = Instant::now() + INTERVAL;
        }
        let until = next_check.saturating_duration_since(Instant::now());
        let got = futures_lite::future::or(async { Some(receiver.next().await) }, async {
            futures_lite::future::or(wake.changed(seen), rt::sleep(until)).await;
            None
        })
        .await;
        match got {
            Some(None) => break,
            Some(Some(events)) => {
                for e in &events {
                    on_event(&shared, e);
                }
            }
            None => {}
        }
    }
}

fn on_event(shared: &Arc<WorkerShared>, e: &Event) {
    match e.kind.as_str() {
        "worker-elect" => on_elect(shared, e),
        "worker-elect-ack" => on_elect_ack(shared, e),
        // memory:// and a Redis without fanout patterns deliver every event.
        _ if e.group() != "worker" || e.hostname == *shared.hostname => {}
        _ => shared.peers.seen(e),
    }
}

/// The `election` control command: this worker stands and counts the acks.
pub(crate) fn election(shared: &WorkerShared, id: &str, topic: &str, action: Value) {
    shared.peers.stand(id);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("topic".into(), json!(topic));
    m.insert("action".into(), action);
    m.insert("cver".into(), json!(1));
    shared.events.send("worker-elect", m);
}

fn on_elect(shared: &WorkerShared, e: &Event) {
    let text = |k: &'static str| e.fields.get(k).and_then(Value::as_str).ok_or(k);
    let (id, topic) = match (text("id"), text("topic")) {
        (Ok(id), Ok(topic)) => (id, topic),
        (Err(k), _) | (_, Err(k)) => return tracing::error!("election request missing field {k}"),
    };
    let candidate = Candidate {
        clock: e.clock,
        process: format!("{}.{}", e.hostname, e.pid),
        topic: topic.to_owned(),
        action: e.fields.get("action").cloned().unwrap_or(Value::Null),
        seen: Instant::now(),
    };
    shared.peers.candidate(id, candidate);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    shared.events.send("worker-elect-ack", m);
}

fn on_elect_ack(shared: &Arc<WorkerShared>, e: &Event) {
    let Some(id) = e.fields.get("id").and_then(Value::as_str) else { return };
    let Some(winner) = shared.peers.ack(id, &e.hostname, &shared.hostname) else { return };
    if winner.process != format!("{}.{}", shared.hostname, std::process::id()) {
        return tracing::info!("node {} elected for {id:?}", winner.process);
    }
    tracing::info!("I won the election {id:?}");
    match winner.topic.as_str() {
        "task" => match serde_json::from_value::<Signature>(winner.action) {
            Ok(sig) => {
                let shared = shared.clone();
                rt::spawn_local(async move {
                    let sent = rt::spawn_blocking(move || shared.client.send_signature(&sig).map(|_| ())).await;
                    if let Err(e) = sent {
                        tracing::error!("Could not call task: {e}");
                    }
                });
            }
            Err(e) => tracing::error!("Could not call task: the election's action is not a signature: {e}"),
        },
        other => tracing::error!("Unknown election topic {other:?}"),
    }
}
