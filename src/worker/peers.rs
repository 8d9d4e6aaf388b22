//! What gossip knows of the other workers (`celery.events.state` as Celery's gossip keeps it):
//! the peers alive, by their worker events, and the elections under way. Shared by the gossip
//! task, the mailbox and the worker's handle; the events come and go in `gossip.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::events::State;
use crate::protocol::Event;
use crate::rt::lock;

/// The other workers and the elections, behind locks taken for microseconds a few times a second.
#[derive(Default)]
pub(crate) struct Peers {
    enabled: bool,
    state: Mutex<State>,
    elections: Mutex<Elections>,
}

#[derive(Default)]
struct Elections {
    /// By election id: the candidates (`worker-elect` events) seen.
    requests: HashMap<String, Vec<Candidate>>,
    /// By election id, for the elections this worker stands in: when it stood and who
    /// acknowledged.
    replies: HashMap<String, (Instant, Vec<String>)>,
}

/// How long an election may wait for its acks before it is given up (a peer alive that does not
/// gossip never acks; Celery's waits forever).
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// One `worker-elect`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub clock: u64,
    /// `hostname.pid`, Celery's `full_hostname`.
    pub process: String,
    pub topic: String,
    pub action: Value,
    /// When it came.
    pub seen: Instant,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

impl Peers {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled, ..Self::default() }
    }

    /// Whether this worker gossips.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The other workers alive now, by node name.
    pub(crate) fn alive(&self) -> Vec<String> {
        let t = now();
        lock(&self.state).workers.values().filter(|w| w.alive(t)).map(|w| w.hostname.clone()).collect()
    }

    /// Takes in another worker's event (online, heartbeat, offline), logged as Celery's gossip
    /// logs joins and leaves.
    pub(crate) fn seen(&self, e: &Event) {
        let mut state = lock(&self.state);
        let was_alive = state.workers.get(&e.hostname).is_some_and(|w| w.alive(now()));
        state.apply(e);
        if e.kind == "worker-offline" {
            tracing::debug!("{} left", e.hostname);
            state.workers.remove(&e.hostname);
        } else if !was_alive {
            tracing::debug!("{} joined the party", e.hostname);
        }
    }

    /// Drops the peers whose heartbeats stopped, each logged as Celery does (one that said
    /// `worker-offline` is gone already), and the elections that waited too long for their acks.
    pub(crate) fn drop_lost(&self) {
        let t = now();
        lock(&self.state).workers.retain(|name, w| {
            let alive = w.alive(t);
            if !alive {
                tracing::info!("missed heartbeat from {name}");
            }
            alive
        });
        let alive = self.alive();
        let mut elections = lock(&self.elections);
        let Elections { requests, replies } = &mut *elections;
        replies.retain(|id, (since, acked)| {
            if since.elapsed() < ELECTION_TIMEOUT {
                return true;
            }
            let silent: Vec<&str> =
                alive.iter().map(String::as_str).filter(|w| !acked.iter().any(|a| a == w)).collect();
            tracing::warn!("election {id:?} given up after {ELECTION_TIMEOUT:?}: no ack from {}", silent.join(", "));
            requests.remove(id);
            false
        });
        // Candidates of elections this worker does not stand in are kept as long.
        requests.retain(|id, c| replies.contains_key(id) || c.iter().any(|c| c.seen.elapsed() < ELECTION_TIMEOUT));
    }

    /// This worker stands in election `id` and will count the acks.
    pub(crate) fn stand(&self, id: &str) {
        lock(&self.elections).replies.insert(id.to_owned(), (Instant::now(), Vec::new()));
    }

    /// A `worker-elect` seen.
    pub(crate) fn candidate(&self, id: &str, c: Candidate) {
        lock(&self.elections).requests.entry(id.to_owned()).or_default().push(c);
    }

    /// A `worker-elect-ack` from `from` for election `id`: the winner once every peer alive and
    /// `me` acknowledged, in an election this worker stands in (then it is over here).
    pub(crate) fn ack(&self, id: &str, from: &str, me: &str) -> Option<Candidate> {
        let alive = self.alive();
        let mut elections = lock(&self.elections);
        let (_, replies) = elections.replies.get_mut(id)?; // not ours
        if !replies.iter().any(|r| r == from) {
            replies.push(from.to_owned());
        }
        if alive.iter().map(String::as_str).chain([me]).any(|w| !replies.iter().any(|r| r == w)) {
            return None;
        }
        // No candidate seen yet: the next ack decides.
        let winner = leader(elections.requests.get(id).map(Vec::as_slice).unwrap_or_default())?;
        elections.requests.remove(id);
        elections.replies.remove(id);
        Some(winner)
    }
}

/// Kombu's `LamportClock.sort_heap`: the lowest clock, ties to the lowest process id.
fn leader(candidates: &[Candidate]) -> Option<Candidate> {
    candidates.iter().min_by(|a, b| (a.clock, &a.process).cmp(&(b.clock, &b.process))).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(clock: u64, process: &str) -> Candidate {
        Candidate { clock, process: process.into(), topic: "task".into(), action: Value::Null, seen: Instant::now() }
    }

    fn beat(host: &str, at: f64) -> Event {
        let v = json!({"type": "worker-heartbeat", "hostname": host, "timestamp": at, "freq": 2.0});
        Event::decode_batch(&v).unwrap().remove(0)
    }

    #[test]
    fn the_lowest_clock_wins_and_ties_go_to_the_lowest_process() {
        assert_eq!(leader(&[c(7, "b.1"), c(3, "z.9"), c(5, "a.1")]).unwrap().process, "z.9");
        assert_eq!(leader(&[c(3, "b.1"), c(3, "a.2")]).unwrap().process, "a.2");
        assert_eq!(leader(&[]), None);
    }

    #[test]
    fn peers_whose_heartbeats_stopped_are_dropped_at_the_check() {
        let peers = Peers::new(true);
        peers.seen(&beat("fresh@h", now()));
        peers.seen(&beat("stale@h", now() - 10.0));
        assert_eq!(peers.alive(), ["fresh@h"]);
        peers.drop_lost();
        assert_eq!(lock(&peers.state).workers.keys().collect::<Vec<_>>(), ["fresh@h"]);
    }

    #[test]
    fn an_election_is_decided_once_every_live_peer_and_this_worker_acked() {
        let peers = Peers::new(true);
        peers.seen(&beat("b@h", now()));
        peers.stand("e1");
        peers.candidate("e1", c(9, "a@h.1"));
        assert_eq!(peers.ack("e1", "a@h", "a@h"), None, "b has not acked");
        assert_eq!(peers.ack("e1", "a@h", "a@h"), None, "a second ack of a is no ack of b");
        peers.candidate("e1", c(4, "b@h.2"));
        assert_eq!(peers.ack("e1", "b@h", "a@h").unwrap().process, "b@h.2");
        assert_eq!(peers.ack("e1", "b@h", "a@h"), None, "decided once");
        assert_eq!(peers.ack("other", "b@h", "a@h"), None, "not standing");
    }

    #[test]
    fn an_election_nobody_answers_is_given_up() {
        let peers = Peers::new(true);
        peers.stand("e2");
        lock(&peers.elections).replies.get_mut("e2").unwrap().0 -= ELECTION_TIMEOUT;
        peers.candidate("old", Candidate { seen: Instant::now() - ELECTION_TIMEOUT, ..c(1, "x@h.1") });
        peers.drop_lost();
        let e = lock(&peers.elections);
        assert!(e.replies.is_empty() && e.requests.is_empty());
    }
}
