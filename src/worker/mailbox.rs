//! The worker's remote-control mailbox (`celery/worker/pidbox.py`): broadcast requests on the
//! `celery.pidbox` fanout exchange, filtered by destination. Handled here: `revoke` (with
//! `terminate`), `rate_limit` and `ping`, each answered when the request asks for a reply
//! (`reply_to` and `ticket`, as kombu's `Node.dispatch` replies: `{hostname: reply}` to the
//! `reply.celery.pidbox` exchange with the client's routing key; on Redis in this build); other
//! commands get kombu's error reply.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::RateLimit;
use crate::protocol::{ControlRequest, Envelope, ExceptionInfo, ResultMeta, State};
use crate::rt;
use crate::transport::Fanout;

use super::shared::WorkerShared;

/// Serves control requests until the worker stops running.
pub(crate) async fn serve(shared: Arc<WorkerShared>, index: usize, mailbox: Fanout) {
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
                Ok(req) if req.is_for(&shared.hostname) => handle(&shared, req),
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

fn handle(shared: &Arc<WorkerShared>, req: ControlRequest) {
    let reply = answer(shared, &req);
    let (Some(to), Some(ticket)) = (&req.reply_to, &req.ticket) else { return };
    let mut body = Map::new();
    body.insert(String::from(&*shared.hostname), reply);
    let body = serde_json::to_vec(&Value::Object(body)).expect("JSON");
    let mut headers = Map::new();
    headers.insert("ticket".into(), Value::String(ticket.clone()));
    headers.insert("clock".into(), Value::from(0));
    let props = crate::protocol::Properties { delivery_mode: 1, ..Default::default() };
    let info = crate::protocol::DeliveryInfo {
        exchange: to.exchange.clone(),
        routing_key: to.routing_key.clone(),
        redelivered: false,
    };
    let env = Envelope::new(headers, props, "application/json", "utf-8", &body, info, uuid::Uuid::new_v4().to_string());
    if let Err(e) = shared.client.broker().publish_direct(&to.exchange, &to.routing_key, env.encode()) {
        tracing::warn!("Cannot reply to the {} control request: {e}", req.method);
    }
}

/// Runs a request; the reply Celery's worker gives it (`ok_reply` / `{"error": …}`).
fn answer(shared: &Arc<WorkerShared>, req: &ControlRequest) -> Value {
    let ok = |text: String| serde_json::json!({ "ok": text });
    let args = &req.arguments;
    match req.method.as_str() {
        "ping" => ok("pong".into()),
        "revoke" => {
            // `task_id` is one id or a list of ids.
            let ids: Vec<String> = match args.get("task_id") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            };
            let terminate = args.get("terminate").and_then(Value::as_bool).unwrap_or(false);
            let signal = args.get("signal").and_then(Value::as_str).map(str::to_owned);
            let list = ids.join(", ");
            revoke(shared, ids, terminate, signal);
            ok(format!("tasks {list} flagged as revoked"))
        }
        "rate_limit" => {
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
                    ok(if rate.is_empty() {
                        "rate limit disabled successfully"
                    } else {
                        "new rate limit set successfully"
                    }
                    .into())
                }
                Ok(_) => {
                    tracing::error!("Rate limit attempt for unknown task {task}");
                    serde_json::json!({ "error": "unknown task" })
                }
                Err(e) => {
                    tracing::error!("Rate limit attempt for {task} failed: {e}");
                    serde_json::json!({ "error": format!("Invalid rate limit string: {e}") })
                }
            }
        }
        other => {
            tracing::debug!("Control command {other:?} is not handled by celeriac yet");
            // kombu's Node.dispatch answers a handler it does not have with the KeyError's repr.
            serde_json::json!({ "error": format!("KeyError('{other}')") })
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
