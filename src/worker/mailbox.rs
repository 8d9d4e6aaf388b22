//! The worker's remote-control mailbox (`celery/worker/pidbox.py`, `celery/worker/control.py`):
//! broadcast requests on the `celery.pidbox` fanout exchange, filtered by destination, each
//! answered when it asks for a reply (`reply_to` and `ticket`, as kombu's `Node.dispatch`
//! replies: `{hostname: reply}` to the `reply.celery.pidbox` exchange with the client's routing
//! key, on Redis and RabbitMQ). Every inspect and control command of Celery 5.7 gets its reply;
//! the inspect answers are in `inspect.rs`; a command that has no meaning here (`pool_grow`,
//! `autoscale`, `objgraph`, …) gets an error reply that says why.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::RateLimit;
use crate::protocol::{ControlRequest, Envelope, ExceptionInfo, ResultMeta, State};
use crate::rt;
use crate::transport::Fanout;

use super::shard_ctx::Queries;
use super::shared::WorkerShared;

/// Serves control requests until the worker stops running.
pub(crate) async fn serve(shared: Arc<WorkerShared>, queries: Queries, index: usize, mailbox: Fanout) {
    let wake = &shared.steal.wake[index];
    loop {
        let seen = wake.epoch();
        if !shared.lifecycle.is_running() {
            break;
        }
        let next = futures_lite::future::or(mailbox.recv_async(), async {
            wake.changed(seen).await;
            Some(Vec::new())
        })
        .await;
        match next {
            None => break,
            Some(raw) if raw.is_empty() => {}
            Some(raw) => match decode(&raw) {
                Ok(req) if req.is_for(&shared.hostname) => handle(&shared, &queries, req).await,
                Ok(_) => {}
                Err(e) => tracing::error!("Ignoring a malformed control message: {e}"),
            },
        }
    }
}

fn decode(raw: &[u8]) -> Result<ControlRequest, String> {
    let env = Envelope::<Map<String, Value>>::decode(raw).map_err(|e| e.to_string())?;
    let body = env.body().map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("control request body: {e}"))
}

async fn handle(shared: &Arc<WorkerShared>, queries: &Queries, req: ControlRequest) {
    if req.method == "hello" && req.arguments.get("from_node").and_then(Value::as_str) == Some(&*shared.hostname) {
        return; // Celery's mingle does not answer itself.
    }
    let reply = answer(shared, queries, &req).await;
    let (Some(to), Some(ticket)) = (&req.reply_to, &req.ticket) else { return };
    let mut body = Map::new();
    body.insert(String::from(&*shared.hostname), reply);
    let body = serde_json::to_vec(&Value::Object(body)).expect("JSON");
    let mut headers = Map::new();
    headers.insert("ticket".into(), Value::String(ticket.clone()));
    headers.insert("clock".into(), Value::from(shared.events.clock().forward()));
    let props = crate::protocol::Properties { delivery_mode: 1, ..Default::default() };
    let env = Envelope::json(headers, props, &body, &to.exchange, &to.routing_key);
    if let Err(e) = shared.client.broker().publish_direct(&to.exchange, &to.routing_key, env.encode()) {
        tracing::warn!("Cannot reply to the {} control request: {e}", req.method);
    }
}

fn ok(text: impl Into<String>) -> Value {
    json!({ "ok": text.into() })
}

/// Argument `k` when it is a non-empty string.
fn text<'a>(args: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    args.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// Runs a request; the reply Celery's worker gives it (`ok_reply` / `{"error": …}`).
async fn answer(shared: &Arc<WorkerShared>, queries: &Queries, req: &ControlRequest) -> Value {
    let args = &req.arguments;
    match req.method.as_str() {
        "ping" => ok("pong"),
        "revoke" | "terminate" => {
            // `task_id` is one id or a list of ids.
            let ids = strings(args.get("task_id"));
            let terminate =
                req.method == "terminate" || args.get("terminate").and_then(Value::as_bool).unwrap_or(false);
            let signal = args.get("signal").and_then(Value::as_str).map(str::to_owned);
            let reply = if terminate {
                format!("terminate: {}", ids.join(", "))
            } else {
                // Celery 5.7 formats the id set as Python prints it.
                let set: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
                format!("tasks {{{}}} flagged as revoked", set.join(", "))
            };
            revoke(shared, ids, terminate, signal);
            ok(reply)
        }
        "rate_limit" => rate_limit(shared, args),
        "time_limit" => {
            let task = args.get("task_name").and_then(Value::as_str).unwrap_or_default();
            let limit = |k: &str| args.get(k).and_then(Value::as_f64);
            if shared.time_limits.set(task, limit("soft"), limit("hard")) {
                tracing::info!(
                    "New time limits for tasks of type {task}: soft={:?} hard={:?}",
                    limit("soft"),
                    limit("hard")
                );
                ok("time limits set successfully")
            } else {
                tracing::error!("Change time limit attempt for unknown task {task}");
                json!({ "error": "unknown task" })
            }
        }
        "enable_events" => {
            if shared.events.set_task_events(true) {
                ok("task events already enabled")
            } else {
                tracing::info!("Events of group {{task}} enabled by remote.");
                ok("task events enabled")
            }
        }
        "disable_events" => {
            if shared.events.set_task_events(false) {
                tracing::info!("Events of group {{task}} disabled by remote.");
                ok("task events disabled")
            } else {
                ok("task events already disabled")
            }
        }
        "heartbeat" => {
            super::heartbeat::on_request(shared);
            Value::Null
        }
        "clock" => json!({ "clock": shared.events.clock().value() }),
        "hello" => {
            let theirs = match args.get("revoked") {
                Some(Value::Object(m)) => m.keys().cloned().collect(),
                other => strings(other),
            };
            for id in &theirs {
                shared.revoked.add(id);
            }
            json!({ "revoked": shared.revoked.ids(), "clock": shared.events.clock().value() })
        }
        "revoked" => json!(shared.revoked.ids()),
        "registered" => super::inspect::registered(shared, &strings(args.get("taskinfoitems"))),
        "stats" => super::inspect::stats(shared, queries).await,
        "active" => super::inspect::active(shared, queries).await,
        "reserved" => super::inspect::reserved(shared, queries).await,
        "scheduled" => super::inspect::scheduled(shared, queries).await,
        "query_task" => super::inspect::query_task(shared, queries, &strings(args.get("ids"))).await,
        "active_queues" => super::inspect::active_queues(shared),
        "conf" => shared.conf.clone(),
        "report" => ok(format!(
            "software -> celeriac:{} (Celery 5.7 protocol)\nplatform -> system:{} arch:{}\nbroker -> {}\nresults -> {}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            shared.client.broker().url(),
            shared.client.backend().url()
        )),
        "shutdown" => {
            tracing::warn!("Got shutdown from remote");
            shared.shut_down(super::ShutdownMode::Warm);
            Value::Null
        }
        "pool_grow" | "pool_shrink" | "autoscale" | "pool_restart" => json!({ "error": format!(
            "{} does not apply to celeriac: it runs task bodies on a fixed set of shards, one per CPU (--shards), \
             with at most -c bodies at once; restart the worker with other values", req.method) }),
        "add_consumer" | "cancel_consumer" => consumers(shared, &req.method, args),
        "election" => match (text(args, "id"), text(args, "topic")) {
            _ if !shared.peers.enabled() => json!({ "error": "gossip is off (--without-gossip, or memory://)" }),
            (Some(id), Some(topic)) => {
                let action = args.get("action").cloned().unwrap_or(Value::Null);
                super::gossip::election(shared, id, topic, action);
                Value::Null
            }
            _ => json!({ "error": "election needs an id and a topic" }),
        },
        "memsample" | "memdump" | "objgraph" | "dump_tasks" | "revoke_by_stamped_headers" => {
            json!({ "error": format!("{} is a Python-only command; celeriac has no such facility", req.method) })
        }
        other => {
            tracing::error!("No such control command: {other}");
            // kombu's Node.dispatch answers a handler it does not have with the KeyError's repr.
            json!({ "error": format!("KeyError('{other}')") })
        }
    }
}

/// `add_consumer` / `cancel_consumer`: the worker's queue list changes at once and every shard
/// follows it before its next fetch; the reply comes first, as Celery's (`call_soon`).
fn consumers(shared: &WorkerShared, method: &str, args: &Map<String, Value>) -> Value {
    let Some(queue) = text(args, "queue") else {
        return json!({ "error": format!("{method} needs the name of a queue") });
    };
    if method == "add_consumer" {
        let spec = shared.consuming.spec(
            queue,
            text(args, "exchange"),
            text(args, "exchange_type"),
            text(args, "routing_key"),
        );
        if shared.consuming.add(spec) {
            tracing::info!("Started consuming from {queue}");
            shared.wake_all();
        }
        ok(format!("add consumer {queue}"))
    } else {
        tracing::info!("Canceling queue {queue}");
        if shared.consuming.cancel(queue) {
            shared.wake_all();
        }
        ok(format!("no longer consuming from {queue}"))
    }
}

fn rate_limit(shared: &Arc<WorkerShared>, args: &Map<String, Value>) -> Value {
    let task = args.get("task_name").and_then(Value::as_str).unwrap_or_default();
    let rate = match args.get("rate_limit") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let limit = if rate.is_empty() { Ok(None) } else { RateLimit::parse(&rate).map(Some) };
    match limit {
        Ok(l) if shared.rate_limits.set(task, l) => {
            tracing::info!(
                "New rate limit for tasks of type {task}: {}.",
                if rate.is_empty() { "none" } else { &rate }
            );
            ok(if rate.is_empty() { "rate limit disabled successfully" } else { "new rate limit set successfully" })
        }
        Ok(_) => {
            tracing::error!("Rate limit attempt for unknown task {task}");
            json!({ "error": "unknown task" })
        }
        Err(e) => {
            tracing::error!("Rate limit attempt for {task} failed: {e}");
            json!({ "error": format!("Invalid rate limit string: {e}") })
        }
    }
}

/// Flags `ids` revoked on this worker: reserved, scheduled and later deliveries are dropped;
/// with `terminate`, running ones are stopped on their shards. As Celery 5.7 does, REVOKED is
/// stored at once for ids whose stored state is still PENDING-like.
pub(crate) fn revoke(shared: &Arc<WorkerShared>, ids: Vec<String>, terminate: bool, signal: Option<String>) {
    if ids.is_empty() {
        return;
    }
    for id in &ids {
        shared.revoked.add(id);
    }
    tracing::info!("Tasks flagged as revoked: {}", ids.join(", "));
    if terminate {
        for (inbox, wake) in shared.terminate.iter().zip(&shared.steal.wake) {
            for id in &ids {
                inbox.push((id.clone(), signal.clone()));
            }
            wake.notify();
        }
    }
    // The backend reads block and the state file write touches the disk: on a shard both go to
    // the blocking pool; a caller's own thread may block.
    let shared = shared.clone();
    let persist = move || {
        let backend = shared.client.backend();
        if backend.is_enabled() {
            for id in &ids {
                let pending = match backend.get(id) {
                    Ok(None) => true,
                    Ok(Some(m)) => {
                        matches!(m.status, State::Pending | State::Received | State::Retry | State::Rejected)
                    }
                    Err(_) => false,
                };
                if pending {
                    let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", "revoked");
                    backend.store_detached(ResultMeta::new(id, State::Revoked, exc.to_value()));
                }
            }
        }
        if let Err(e) = shared.revoked.save() {
            tracing::error!("{e}");
        }
    };
    if rt::on_executor() {
        rt::spawn_local(async move { rt::spawn_blocking(persist).await });
    } else {
        persist();
    }
}
