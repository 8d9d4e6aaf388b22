//! The task events a worker sends (`-E`), with the fields `celery events` and Flower read
//! (PROTOCOL.md §5.4). Each is built only when task events are on.

use serde_json::{json, Map, Value};

use crate::protocol::{py_repr, shorten, Headers, REPR_MAX};

use super::shared::WorkerShared;

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn send(shared: &WorkerShared, kind: &str, make: impl FnOnce() -> Value) {
    if shared.events.task_events() {
        shared.events.send_task(kind, fields(make()));
    }
}

/// `task-received`: the arguments as their reprs (`argsrepr`, `kwargsrepr`, or made here).
pub(crate) fn received(shared: &WorkerShared, h: &Headers, args: impl FnOnce() -> (String, String)) {
    send(shared, "task-received", || {
        let (args, kwargs) = match (&h.argsrepr, &h.kwargsrepr) {
            (Some(a), Some(k)) => (a.clone(), k.clone()),
            _ => args(),
        };
        json!({"uuid": h.id, "name": h.task, "args": args, "kwargs": kwargs, "root_id": h.root_id,
               "parent_id": h.parent_id, "retries": h.retries, "eta": h.eta, "expires": h.expires})
    });
}

/// `task-started`.
pub(crate) fn started(shared: &WorkerShared, id: &str) {
    send(shared, "task-started", || json!({ "uuid": id }));
}

/// `task-succeeded`: the result's repr and the run time in seconds.
pub(crate) fn succeeded(shared: &WorkerShared, id: &str, result: &Value, runtime: f64) {
    send(
        shared,
        "task-succeeded",
        || json!({"uuid": id, "result": shorten(&py_repr(result), REPR_MAX), "runtime": runtime}),
    );
}

/// `task-failed` (an unknown task's too, with `NotRegistered`).
pub(crate) fn failed(shared: &WorkerShared, id: &str, exception: &str, traceback: &str) {
    send(shared, "task-failed", || json!({"uuid": id, "exception": exception, "traceback": traceback}));
}

/// `task-retried`.
pub(crate) fn retried(shared: &WorkerShared, id: &str, exception: &str, traceback: Option<&str>) {
    send(shared, "task-retried", || json!({"uuid": id, "exception": exception, "traceback": traceback}));
}

/// `task-revoked`.
pub(crate) fn revoked(shared: &WorkerShared, id: &str, terminated: bool, signum: Option<&str>, expired: bool) {
    send(
        shared,
        "task-revoked",
        || json!({"uuid": id, "terminated": terminated, "signum": signum, "expired": expired}),
    );
}

/// `task-rejected`.
pub(crate) fn rejected(shared: &WorkerShared, id: &str, requeue: bool) {
    send(shared, "task-rejected", || json!({"uuid": id, "requeue": requeue}));
}
