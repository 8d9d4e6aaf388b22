//! What events say of a cluster (`celery.events.state.State`): workers, alive while their
//! heartbeats keep coming (within twice their `freq`), and tasks, each in the state its latest
//! event put it in; an event that arrives late does not move a finished task back.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::protocol::Event;

/// A worker as its events describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerState {
    /// The node name.
    pub hostname: String,
    /// Seconds between heartbeats.
    pub freq: f64,
    /// When the last worker event came (the sender's clock, UNIX seconds).
    pub last_heartbeat: Option<f64>,
    /// Tasks running at the last heartbeat.
    pub active: Option<u64>,
    /// Tasks processed at the last heartbeat.
    pub processed: Option<u64>,
    /// The sender's software (`py-celery`, `celeriac`) and version.
    pub sw_ident: Option<String>,
    /// Its version.
    pub sw_ver: Option<String>,
    /// It said `worker-offline`.
    pub offline: bool,
}

impl WorkerState {
    /// Alive at `now` (UNIX seconds): online and its last heartbeat within twice its `freq`
    /// (Celery's `HEARTBEAT_EXPIRE_WINDOW`).
    pub fn alive(&self, now: f64) -> bool {
        !self.offline && self.last_heartbeat.is_some_and(|t| now < t + self.freq * 2.0)
    }
}

/// A task as its events describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskState {
    /// The id.
    pub uuid: String,
    /// Its name (from `task-received` or `task-sent`).
    pub name: Option<String>,
    /// Celery's state word: PENDING (sent), RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED.
    pub state: String,
    /// The worker that sent its latest event.
    pub hostname: Option<String>,
    /// The result's repr (`task-succeeded`).
    pub result: Option<String>,
    /// Seconds the body ran (`task-succeeded`).
    pub runtime: Option<f64>,
    /// The exception's repr (`task-failed`, `task-retried`).
    pub exception: Option<String>,
    /// When each state was reached, by state word.
    pub timestamps: BTreeMap<String, f64>,
}

/// Workers and tasks, kept up to date by [`State::apply`].
#[derive(Debug, Clone, Default)]
pub struct State {
    /// By node name.
    pub workers: BTreeMap<String, WorkerState>,
    /// By task id.
    pub tasks: HashMap<String, TaskState>,
    /// Events applied.
    pub event_count: u64,
}

fn ready(state: &str) -> bool {
    matches!(state, "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED")
}

impl State {
    /// Takes in one event.
    pub fn apply(&mut self, e: &Event) {
        self.event_count += 1;
        let text = |k: &str| e.fields.get(k).and_then(Value::as_str).map(str::to_owned);
        match e.group() {
            "worker" => {
                let w = self.workers.entry(e.hostname.clone()).or_default();
                w.hostname = e.hostname.clone();
                w.freq = e.fields.get("freq").and_then(Value::as_f64).unwrap_or(w.freq.max(2.0));
                w.last_heartbeat = Some(e.timestamp);
                w.active = e.fields.get("active").and_then(Value::as_u64).or(w.active);
                w.processed = e.fields.get("processed").and_then(Value::as_u64).or(w.processed);
                w.sw_ident = text("sw_ident").or(w.sw_ident.take());
                w.sw_ver = text("sw_ver").or(w.sw_ver.take());
                w.offline = e.kind == "worker-offline";
            }
            "task" => {
                let Some(id) = text("uuid") else { return };
                let word = match e.kind.as_str() {
                    "task-sent" => "PENDING",
                    "task-received" => "RECEIVED",
                    "task-started" => "STARTED",
                    "task-succeeded" => "SUCCESS",
                    "task-failed" => "FAILURE",
                    "task-retried" => "RETRY",
                    "task-revoked" => "REVOKED",
                    "task-rejected" => "REJECTED",
                    _ => return,
                };
                let t = self.tasks.entry(id.clone()).or_insert_with(|| TaskState { uuid: id, ..TaskState::default() });
                t.timestamps.insert(word.to_owned(), e.timestamp);
                t.name = text("name").or(t.name.take());
                if e.kind != "task-sent" {
                    t.hostname = Some(e.hostname.clone());
                }
                t.result = text("result").or(t.result.take());
                t.runtime = e.fields.get("runtime").and_then(Value::as_f64).or(t.runtime);
                t.exception = text("exception").or(t.exception.take());
                if !ready(&t.state) || ready(word) {
                    t.state = word.to_owned();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Event {
        Event::decode_batch(&v).unwrap().remove(0)
    }

    #[test]
    fn workers_live_by_heartbeat_and_tasks_keep_their_last_state() {
        let mut s = State::default();
        s.apply(&ev(
            json!({"type": "worker-heartbeat", "hostname": "w1", "timestamp": 100.0, "freq": 2.0, "active": 1}),
        ));
        assert!(s.workers["w1"].alive(103.0));
        assert!(!s.workers["w1"].alive(104.5));
        s.apply(&ev(json!({"type": "task-succeeded", "hostname": "w1", "timestamp": 101.0, "uuid": "a", "result": "5", "runtime": 0.01})));
        // A received that arrives after the success does not undo it.
        s.apply(&ev(
            json!({"type": "task-received", "hostname": "w1", "timestamp": 100.5, "uuid": "a", "name": "t.add"}),
        ));
        let t = &s.tasks["a"];
        assert_eq!((t.state.as_str(), t.name.as_deref(), t.result.as_deref()), ("SUCCESS", Some("t.add"), Some("5")));
        s.apply(&ev(json!({"type": "worker-offline", "hostname": "w1", "timestamp": 102.0})));
        assert!(!s.workers["w1"].alive(102.5));
        assert_eq!(s.event_count, 4);
    }
}
