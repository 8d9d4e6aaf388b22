//! The answers to `celery inspect` (`celery/worker/control.py`'s inspect commands), in the
//! shapes Python's `app.control.inspect()` and Flower read (PROTOCOL.md §6.4). What only a
//! shard holds (the bodies it runs, the deliveries it holds for their ETA) is asked of every
//! shard as a [`Query`](super::shard_ctx::Query), run by its dispatcher between tasks.

use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::protocol::{DecodedBody, TaskMessage};
use crate::rt;

use super::shard_ctx::{Queries, ShardCtx};
use super::shared::WorkerShared;

/// How long the mailbox waits for a shard busy in a long synchronous body.
const SHARD_ANSWER: Duration = Duration::from_millis(800);

/// Celery's request info dict for a message (`Request.info`).
fn info_of(
    shared: &WorkerShared,
    msg: &TaskMessage,
    body: &DecodedBody,
    info: Value,
    time_start: Option<f64>,
) -> Value {
    let (args, kwargs) = match body.parse() {
        Ok(b) => (Value::Array(b.args_value()), Value::Object(b.kwargs_value())),
        Err(_) => (json!([]), json!({})),
    };
    let h = &msg.headers;
    json!({"id": h.id, "name": h.task, "args": args, "kwargs": kwargs, "type": h.task,
           "hostname": &*shared.hostname, "time_start": time_start, "acknowledged": !shared.acks_late,
           "delivery_info": info, "worker_pid": time_start.map(|_| std::process::id())})
}

fn delivery(msg: &TaskMessage, exchange: &str, routing_key: &str, redelivered: bool) -> Value {
    json!({"exchange": exchange, "routing_key": routing_key, "priority": msg.properties.priority,
           "redelivered": redelivered})
}

/// Asks every shard `f` and gathers the answers that come within [`SHARD_ANSWER`].
async fn ask<T: Send + 'static>(shared: &WorkerShared, queries: &Queries, f: fn(&Rc<ShardCtx>) -> T) -> Vec<T> {
    let (tx, rx) = flume::unbounded();
    for (i, q) in queries.iter().enumerate() {
        let tx = tx.clone();
        q.push(Box::new(move |sh| {
            let _ = tx.send(f(sh));
        }));
        shared.steal.wake[i].notify();
    }
    drop(tx);
    let mut out = Vec::new();
    for _ in 0..queries.len() {
        match rt::timeout_anywhere(SHARD_ANSWER, rx.recv_async()).await {
            Some(Ok(v)) => out.push(v),
            _ => break,
        }
    }
    out
}

/// `active`: the bodies running now (a synchronous body holds its shard, which answers after it).
pub(crate) async fn active(shared: &WorkerShared, queries: &Queries) -> Value {
    let per_shard = ask(shared, queries, |sh| {
        sh.active
            .borrow()
            .values()
            .map(|r| {
                let d = r.ctx.delivery_info();
                let info = delivery(r.ctx.message(), &d.exchange, &d.routing_key, d.redelivered);
                info_of(&sh.shared, r.ctx.message(), r.ctx.body(), info, Some(r.since))
            })
            .collect::<Vec<_>>()
    })
    .await;
    Value::Array(per_shard.into_iter().flatten().collect())
}

/// `scheduled`: deliveries held for their ETA or countdown, soonest first.
pub(crate) async fn scheduled(shared: &WorkerShared, queries: &Queries) -> Value {
    let per_shard = ask(shared, queries, |sh| {
        let mut out = Vec::new();
        sh.timer.each_held(|held| {
            if held.kind == super::timer::HoldKind::Eta {
                let d = &held.settle.info;
                let info = delivery(&held.msg, &d.exchange, &d.routing_key, d.redelivered);
                out.push(json!({"eta": held.msg.headers.eta, "priority": held.msg.properties.priority,
                                "request": info_of(&sh.shared, &held.msg, &held.body, info, None)}));
            }
        });
        out
    })
    .await;
    Value::Array(per_shard.into_iter().flatten().collect())
}

/// `reserved`: deliveries received and not started: those whose moment came (an ETA passed, a
/// rate limit let them through) waiting for a run slot, then the prefetched ones in the
/// shard's queue, in the order they will start.
pub(crate) async fn reserved(shared: &WorkerShared, queries: &Queries) -> Value {
    let per_shard = ask(shared, queries, |sh| {
        let mut out: Vec<Value> = sh
            .ready
            .borrow()
            .iter()
            .map(|held| {
                let d = &held.settle.info;
                let info = delivery(&held.msg, &d.exchange, &d.routing_key, d.redelivered);
                info_of(&sh.shared, &held.msg, &held.body, info, None)
            })
            .collect();
        sh.each_reserved(|d| {
            let mut msg = d.message.clone();
            let info = delivery(&msg, &d.info.exchange, &d.info.routing_key, d.info.redelivered);
            // Undecodable bodies are rejected when they come up; listed here without arguments.
            match msg.decode_body(&sh.shared.accept) {
                Ok(body) => out.push(info_of(&sh.shared, &msg, &body, info, None)),
                Err(_) => out.push(info_of(&sh.shared, &msg, &DecodedBody::of_args(&[], &Map::new()), info, None)),
            }
        });
        out
    })
    .await;
    Value::Array(per_shard.into_iter().flatten().collect())
}

/// `query_task`: for each id asked, `[state, info]` with state `active`, `reserved` or
/// `scheduled`.
pub(crate) async fn query_task(shared: &WorkerShared, queries: &Queries, ids: &[String]) -> Value {
    let active = self::active(shared, queries).await;
    let reserved = self::reserved(shared, queries).await;
    let scheduled = self::scheduled(shared, queries).await;
    let mut out = Map::new();
    for (state, list) in [("active", &active), ("reserved", &reserved), ("scheduled", &scheduled)] {
        for item in list.as_array().into_iter().flatten() {
            let info = item.get("request").unwrap_or(item);
            if let Some(id) = info.get("id").and_then(Value::as_str).filter(|id| ids.iter().any(|i| i == id)) {
                out.insert(id.to_owned(), json!([state, info]));
            }
        }
    }
    Value::Object(out)
}

/// `conf`: the settings, the URLs as the banner shows them (passwords hidden).
pub(crate) fn conf(config: &crate::Config, client: &crate::Client) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or_default();
    v["broker_url"] = json!(client.broker().url());
    if config.result_backend.is_some() {
        v["result_backend"] = json!(client.backend().url());
    }
    v
}

/// `stats`: the keys Flower shows (`total` counts each task type's runs, from every shard).
pub(crate) async fn stats(shared: &WorkerShared, queries: &Queries) -> Value {
    let processed = shared.total(|c| &c.processed);
    let mut total = Map::new();
    for shard in ask(shared, queries, |sh| sh.totals.borrow().clone()).await {
        for (name, n) in shard {
            let t = total.entry(name).or_insert(json!(0));
            *t = json!(t.as_u64().unwrap_or(0) + n);
        }
    }
    let usage = rusage();
    json!({
        "total": total,
        "pid": std::process::id(),
        "clock": shared.events.clock().value().to_string(),
        "uptime": shared.since.elapsed().as_secs(),
        "pool": {"implementation": "celeriac:shards", "max-concurrency": shared.concurrency(),
                 "processes": [std::process::id()], "shards": shared.stats.len(), "max-tasks-per-child": null,
                 "put-guarded-by-semaphore": false, "timeouts": [shared.soft_time_limit.unwrap_or(0.0), shared.time_limit.unwrap_or(0.0)]},
        "broker": broker_info(&shared.client.broker().url()),
        "prefetch_count": shared.concurrency() * shared.prefetch_multiplier,
        "rusage": usage,
        "processed": processed,
    })
}

/// kombu's `Connection.info()` of the broker, from its URL as the config parses it (the
/// password left out).
fn broker_info(url: &str) -> Value {
    use crate::config::{RedisAddr, Url};
    let (transport, host, port, userid, vhost, ssl, heartbeat) = match Url::parse("broker_url", url) {
        Ok(Url::Redis(r)) => {
            let (host, port) = match &r.addr {
                RedisAddr::Tcp(h, p) => (h.clone(), Some(*p)),
                RedisAddr::Unix(path) => (path.clone(), None),
            };
            ("redis", host, port, r.username.clone(), r.db.to_string(), r.tls.is_some(), None)
        }
        Ok(Url::Amqp(a)) => {
            let hb = Some(f64::from(a.heartbeat));
            ("amqp", a.host.clone(), Some(a.port), Some(a.user.clone()), a.vhost.clone(), a.tls.is_some(), hb)
        }
        _ => ("memory", "localhost".to_owned(), None, None, "/".to_owned(), false, None),
    };
    json!({"hostname": host, "userid": userid, "virtual_host": vhost, "port": port, "insist": false, "ssl": ssl,
           "transport": transport, "connect_timeout": 4, "transport_options": {}, "login_method": null,
           "uri_prefix": null, "heartbeat": heartbeat, "failover_strategy": "round-robin", "alternates": []})
}

fn rusage() -> Value {
    // SAFETY: getrusage writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return json!({});
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    json!({"utime": secs(u.ru_utime), "stime": secs(u.ru_stime), "maxrss": u.ru_maxrss, "minflt": u.ru_minflt,
           "majflt": u.ru_majflt, "nvcsw": u.ru_nvcsw, "nivcsw": u.ru_nivcsw})
}

/// `registered`: task names without Celery's built-ins, with `taskinfoitems` as
/// `"name [rate_limit=10/m]"`.
pub(crate) fn registered(shared: &WorkerShared, items: &[String]) -> Value {
    let names = shared.registry.names().into_iter().filter(|n| !n.starts_with("celery."));
    let rows = names.map(|n| {
        let entry = shared.registry.get(n).expect("names come from the registry");
        let o = &entry.options;
        let attrs: Vec<String> = items
            .iter()
            .filter_map(|item| {
                let v = match item.as_str() {
                    "rate_limit" => o.rate_limit.clone(),
                    "time_limit" => o.time_limit.map(|t| t.to_string()),
                    "soft_time_limit" => o.soft_time_limit.map(|t| t.to_string()),
                    "acks_late" => o.acks_late.map(|t| t.to_string()),
                    "ignore_result" => o.ignore_result.map(|t| t.to_string()),
                    _ => None,
                }?;
                Some(format!("{item}={v}"))
            })
            .collect();
        if attrs.is_empty() {
            json!(n)
        } else {
            json!(format!("{n} [{}]", attrs.join(" ")))
        }
    });
    Value::Array(rows.collect())
}

/// `active_queues`: kombu's queue dicts for the queues consumed.
pub(crate) fn active_queues(shared: &WorkerShared) -> Value {
    let q = shared.consuming.snapshot().1.into_iter().map(|spec| {
        json!({"name": spec.name, "exchange": {"name": spec.exchange_name(), "type": spec.exchange_type, "arguments": null,
                                          "durable": true, "passive": false, "auto_delete": false, "delivery_mode": null,
                                          "no_declare": false},
               "routing_key": spec.key(), "queue_arguments": null, "binding_arguments": null, "consumer_arguments": null,
               "durable": true, "exclusive": false, "auto_delete": false, "no_ack": false, "alias": null,
               "bindings": [], "no_declare": null, "expires": null, "message_ttl": null, "max_length": null,
               "max_length_bytes": null, "max_priority": null})
    });
    Value::Array(q.collect())
}
