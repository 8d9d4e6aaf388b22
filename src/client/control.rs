//! Remote control as `celery.app.control` speaks it: a pidbox request on the `celery.pidbox`
//! fanout exchange, and, when replies are wanted, a reply queue of the caller's own
//! (`<oid>.reply.celery.pidbox`, bound to the `reply.celery.pidbox` direct exchange with key
//! `<oid>`, and kept for the next call) read until the timeout or the `limit`-th reply, keeping
//! the replies that carry the request's ticket. [`Client::inspect`] asks the inspect commands and
//! [`Client::control`] sends the control ones; both answer with each node's reply, typed, and
//! how long it took to come.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::protocol::{ControlRequest, Envelope, Properties, ReplyTo};
use crate::transport::Fanout;
use crate::{rt, Error, Result};

use super::Client;

/// The exchange workers reply on.
const REPLY_EXCHANGE: &str = "reply.celery.pidbox";

impl Client {
    /// Revokes `task_id` on every worker (`app.control.revoke(task_id, terminate=…,
    /// signal=…)`): a worker that has it reserved or scheduled drops it and stores REVOKED; one
    /// that receives it later does too (for as long as it remembers the id); with `terminate`, a
    /// running task is stopped. `signal` is accepted for Celery's sake (`"SIGTERM"`, `"SIGKILL"`)
    /// and reported, since tasks run in the worker's own threads rather than child processes.
    /// Sends without waiting for replies; [`Control::revoke`] collects them.
    pub fn revoke(&self, task_id: &str, terminate: bool, signal: Option<&str>) -> Result<()> {
        self.broadcast("revoke", json!({"task_id": task_id, "terminate": terminate, "signal": signal}))
    }

    /// Changes the rate limit of task type `task_name` on every worker
    /// (`app.control.rate_limit(task_name, rate_limit)`); `"0"` or an empty string removes it.
    /// Sends without waiting for replies; [`Control::rate_limit`] collects them.
    pub fn rate_limit(&self, task_name: &str, rate_limit: &str) -> Result<()> {
        self.broadcast("rate_limit", json!({"task_name": task_name, "rate_limit": rate_limit}))
    }

    /// Publishes a control command to every worker, without asking for replies.
    pub fn broadcast(&self, method: &str, arguments: Value) -> Result<()> {
        self.publish_request(method, arguments, &[], None)
    }

    /// Celery's `app.control.inspect()`: the inspect commands, answered by every worker (or the
    /// [`destination`](Inspect::destination) nodes) within the timeout (1 s by default, as
    /// Celery's). Call it from outside the worker's shards: it waits for the replies.
    ///
    /// ```no_run
    /// # fn main() -> celeriac::Result<()> {
    /// let app = celeriac::App::builder("proj").broker("redis://127.0.0.1:6379/0").build()?;
    /// for pong in app.client().inspect().ping()? {
    ///     println!("{} answered in {:?}", pong.node, pong.after);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect { ask: Ask::new(self) }
    }

    /// Celery's `app.control`: the control commands, with each node's `ok` or `error` reply.
    pub fn control(&self) -> Control<'_> {
        Control { ask: Ask::new(self) }
    }

    fn publish_request(
        &self,
        method: &str,
        arguments: Value,
        dest: &[String],
        reply: Option<(&str, &str)>,
    ) -> Result<()> {
        let arguments = match arguments {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let req = ControlRequest {
            method: method.to_owned(),
            arguments,
            destination: (!dest.is_empty()).then(|| dest.to_vec()),
            pattern: None,
            matcher: None,
            ticket: reply.map(|(ticket, _)| ticket.to_owned()),
            reply_to: reply
                .map(|(_, oid)| ReplyTo { exchange: REPLY_EXCHANGE.to_owned(), routing_key: oid.to_owned() }),
        };
        let body = serde_json::to_vec(&req).expect("control requests are JSON values");
        let headers = json!({"clock": 0, "expires": 0});
        let env = Envelope::json(headers, Properties::default(), &body, "celery.pidbox", "");
        Ok(self.broker().publish_fanout("celery.pidbox", "", env.encode())?)
    }
}

/// One node's reply to a remote-control request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The node that replied (`celery@host`).
    pub node: String,
    /// What it replied.
    pub value: T,
    /// How long after the request was sent the reply came (a `ping`'s round trip).
    pub after: Duration,
}

/// Who is asked and how long replies are awaited (shared by [`Inspect`] and [`Control`]).
#[derive(Clone)]
struct Ask<'a> {
    client: &'a Client,
    destination: Vec<String>,
    timeout: Duration,
    limit: Option<usize>,
}

impl<'a> Ask<'a> {
    fn new(client: &'a Client) -> Self {
        Ask { client, destination: Vec::new(), timeout: Duration::from_secs(1), limit: None }
    }

    /// Sends `method` and gathers the raw replies with the request's ticket.
    fn call(&self, method: &str, arguments: Value) -> Result<Vec<Reply<Value>>> {
        let (oid, replies) = self.client.reply_queues().take().unwrap_or_else(|| {
            let oid = uuid::Uuid::new_v4().to_string();
            let queue = format!("{oid}.{REPLY_EXCHANGE}");
            let replies = self.client.broker().subscribe_queue(REPLY_EXCHANGE, &oid, &queue);
            (oid, replies)
        });
        let out = self.gather(method, arguments, &oid, &replies);
        self.client.reply_queues().put(oid, replies);
        out
    }

    /// Sends the request with a fresh ticket and reads `replies` for its answers.
    fn gather(&self, method: &str, arguments: Value, oid: &str, replies: &Fanout) -> Result<Vec<Reply<Value>>> {
        let ticket = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        self.client.publish_request(method, arguments, &self.destination, Some((&ticket, oid)))?;
        let limit = self.limit.unwrap_or(if self.destination.is_empty() { usize::MAX } else { self.destination.len() });
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(left) = self.timeout.checked_sub(sent.elapsed()) else { break };
            let Some(Some(raw)) = rt::block_on(rt::timeout_anywhere(left, replies.recv_async())) else { break };
            let after = sent.elapsed();
            let Ok(env) = Envelope::<Map<String, Value>>::decode(&raw) else { continue };
            if env.headers().get("ticket").and_then(Value::as_str) != Some(ticket.as_str()) {
                continue;
            }
            let Ok(Value::Object(body)) = env.body().map(|b| serde_json::from_slice::<Value>(&b).unwrap_or_default())
            else {
                continue;
            };
            out.extend(body.into_iter().map(|(node, value)| Reply { node, value, after }));
        }
        Ok(out)
    }

    fn typed<T: DeserializeOwned>(&self, method: &str, arguments: Value) -> Result<Vec<Reply<T>>> {
        self.call(method, arguments)?
            .into_iter()
            .map(|r| {
                let value = serde_json::from_value(r.value).map_err(|e| {
                    Error::Protocol(crate::protocol::ProtocolError::Malformed(format!(
                        "{}'s reply to {method}: {e}",
                        r.node
                    )))
                })?;
                Ok(Reply { node: r.node, value, after: r.after })
            })
            .collect()
    }
}

macro_rules! ask_options {
    () => {
        /// Asks only these nodes (`-d celery@host1,celery@host2`); the replies are awaited until
        /// each of them answered or the timeout.
        pub fn destination<I, S>(mut self, nodes: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.ask.destination = nodes.into_iter().map(Into::into).collect();
            self
        }

        /// How long replies are awaited (`-t`; 1 s by default).
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.ask.timeout = timeout;
            self
        }

        /// Stops waiting after this many replies.
        pub fn limit(mut self, n: usize) -> Self {
            self.ask.limit = Some(n);
            self
        }

        /// Sends any command and returns each node's raw JSON reply (for commands without a
        /// typed method here).
        pub fn call(&self, method: &str, arguments: Value) -> Result<Vec<Reply<Value>>> {
            self.ask.call(method, arguments)
        }
    };
}

/// The inspect commands (`celery inspect …`); made by [`Client::inspect`].
#[derive(Clone)]
pub struct Inspect<'a> {
    ask: Ask<'a>,
}

/// A task as `inspect active`, `reserved` and `query_task` describe it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Task name.
    pub name: String,
    /// Positional arguments (as sent; Celery shows their repr for Python workers).
    pub args: Value,
    /// Keyword arguments.
    pub kwargs: Value,
    /// Task name again (Celery's `type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The node running or holding it.
    pub hostname: String,
    /// When it started, seconds since the epoch (running tasks).
    pub time_start: Option<f64>,
    /// Whether its message is acked.
    pub acknowledged: bool,
    /// Where it came from (`exchange`, `routing_key`, `priority`, `redelivered`).
    pub delivery_info: Value,
    /// The process running it.
    pub worker_pid: Option<u32>,
}

/// A task held until its ETA (`inspect scheduled`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduledTask {
    /// When it is due (ISO 8601).
    pub eta: Option<String>,
    /// Its priority.
    pub priority: Option<i64>,
    /// The task.
    pub request: TaskInfo,
}

/// `inspect stats`: the keys Flower and `celery inspect stats` show (the rest in `other`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Tasks run, by name.
    pub total: BTreeMap<String, u64>,
    /// The worker's process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime: u64,
    /// Its logical clock.
    pub clock: String,
    /// The pool (`max-concurrency`, `processes`, …).
    pub pool: Value,
    /// The broker connection.
    pub broker: Value,
    /// Messages it may hold reserved.
    pub prefetch_count: u64,
    /// getrusage(2).
    pub rusage: Value,
    /// Everything else.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A queue a worker consumes (`inspect active_queues`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// Its binding key.
    pub routing_key: Option<String>,
    /// The rest of kombu's queue description (exchange, durability, arguments).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `query_task`'s answer: by task id, where it is (`active`, `reserved`, `scheduled`) and the
/// task as [`TaskInfo`] describes it.
pub type TaskWhere = BTreeMap<String, (String, Value)>;

#[derive(Deserialize)]
struct Ok_ {
    ok: String,
}

#[derive(Deserialize)]
struct ClockReply {
    clock: u64,
}

impl Inspect<'_> {
    ask_options!();

    /// `ping`: who is alive, and each one's round trip.
    pub fn ping(&self) -> Result<Vec<Reply<String>>> {
        Ok(ok_texts(self.ask.typed::<Ok_>("ping", json!({}))?))
    }

    /// `stats`.
    pub fn stats(&self) -> Result<Vec<Reply<Stats>>> {
        self.ask.typed("stats", json!({}))
    }

    /// `registered`: the task names each worker knows.
    pub fn registered(&self) -> Result<Vec<Reply<Vec<String>>>> {
        self.ask.typed("registered", json!({"taskinfoitems": []}))
    }

    /// `active`: the tasks running now.
    pub fn active(&self) -> Result<Vec<Reply<Vec<TaskInfo>>>> {
        self.ask.typed("active", json!({"safe": null}))
    }

    /// `reserved`: tasks received and waiting to run.
    pub fn reserved(&self) -> Result<Vec<Reply<Vec<TaskInfo>>>> {
        self.ask.typed("reserved", json!({"safe": null}))
    }

    /// `scheduled`: tasks held until their ETA.
    pub fn scheduled(&self) -> Result<Vec<Reply<Vec<ScheduledTask>>>> {
        self.ask.typed("scheduled", json!({"safe": null}))
    }

    /// `revoked`: the revoked ids each worker remembers.
    pub fn revoked(&self) -> Result<Vec<Reply<Vec<String>>>> {
        self.ask.typed("revoked", json!({}))
    }

    /// `active_queues`.
    pub fn active_queues(&self) -> Result<Vec<Reply<Vec<QueueInfo>>>> {
        self.ask.typed("active_queues", json!({}))
    }

    /// `query_task`: where each of `ids` is (`active`, `reserved` or `scheduled`) and what it is.
    pub fn query_task<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Reply<TaskWhere>>> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        self.ask.typed("query_task", json!({ "ids": ids }))
    }

    /// `conf`: each worker's settings (passwords masked).
    pub fn conf(&self) -> Result<Vec<Reply<Map<String, Value>>>> {
        self.ask.typed("conf", json!({"with_defaults": false}))
    }

    /// `report`: each worker's bug-report text.
    pub fn report(&self) -> Result<Vec<Reply<String>>> {
        Ok(ok_texts(self.ask.typed::<Ok_>("report", json!({}))?))
    }

    /// `clock`: each worker's logical clock.
    pub fn clock(&self) -> Result<Vec<Reply<u64>>> {
        Ok(self.ask.typed::<ClockReply>("clock", json!({}))?.into_iter().map(|r| r.map(|c| c.clock)).collect())
    }
}

impl<T> Reply<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        Reply { node: self.node, value: f(self.value), after: self.after }
    }
}

fn ok_texts(replies: Vec<Reply<Ok_>>) -> Vec<Reply<String>> {
    replies.into_iter().map(|r| r.map(|o| o.ok)).collect()
}

/// The control commands (`celery control …`); made by [`Client::control`]. Each node answers
/// `Ok(text)` (Celery's `{"ok": …}`) or `Err(why)` (`{"error": …}`).
#[derive(Clone)]
pub struct Control<'a> {
    ask: Ask<'a>,
}

/// A control command's answer from one node: `Ok(what it did)` or `Err(why not)`.
pub type Outcome = std::result::Result<String, String>;

impl Control<'_> {
    ask_options!();

    /// Sends `method` and reads each node's `ok`/`error`.
    pub fn command(&self, method: &str, arguments: Value) -> Result<Vec<Reply<Outcome>>> {
        Ok(self.ask.call(method, arguments)?.into_iter().map(|r| r.map(outcome)).collect())
    }

    /// `revoke` (with `terminate`, the running task is stopped).
    pub fn revoke<S: AsRef<str>>(
        &self,
        ids: &[S],
        terminate: bool,
        signal: Option<&str>,
    ) -> Result<Vec<Reply<Outcome>>> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        self.command("revoke", json!({"task_id": ids, "terminate": terminate, "signal": signal}))
    }

    /// `rate_limit` of task type `task_name` (`"10/m"`; `"0"` removes it).
    pub fn rate_limit(&self, task_name: &str, rate_limit: &str) -> Result<Vec<Reply<Outcome>>> {
        self.command("rate_limit", json!({"task_name": task_name, "rate_limit": rate_limit}))
    }

    /// `time_limit` of task type `task_name`, seconds (soft, hard; `None` removes one).
    pub fn time_limit(&self, task_name: &str, soft: Option<f64>, hard: Option<f64>) -> Result<Vec<Reply<Outcome>>> {
        self.command("time_limit", json!({"task_name": task_name, "soft": soft, "hard": hard}))
    }

    /// `enable_events`: task events on.
    pub fn enable_events(&self) -> Result<Vec<Reply<Outcome>>> {
        self.command("enable_events", json!({}))
    }

    /// `disable_events`: task events off.
    pub fn disable_events(&self) -> Result<Vec<Reply<Outcome>>> {
        self.command("disable_events", json!({}))
    }

    /// `add_consumer`: consume one more queue.
    pub fn add_consumer(&self, queue: &str) -> Result<Vec<Reply<Outcome>>> {
        self.command("add_consumer", json!({ "queue": queue }))
    }

    /// `cancel_consumer`: stop consuming a queue.
    pub fn cancel_consumer(&self, queue: &str) -> Result<Vec<Reply<Outcome>>> {
        self.command("cancel_consumer", json!({ "queue": queue }))
    }

    /// Celery's `app.control.election`: the workers (every one, or the destination) stand in
    /// election `id`; the one their gossip elects (the lowest Lamport clock) runs `action`, for
    /// topic `task` a signature it sends: a task sent once by the fleet. No reply, as in Celery.
    pub fn election(&self, id: &str, topic: &str, action: Option<&crate::Signature>) -> Result<()> {
        let arguments = json!({ "id": id, "topic": topic, "action": action });
        self.ask.client.publish_request("election", arguments, &self.ask.destination, None)
    }

    /// `shutdown`: the workers stop warmly (no reply, as in Celery).
    pub fn shutdown(&self) -> Result<()> {
        self.ask.client.publish_request("shutdown", json!({}), &self.ask.destination, None)
    }
}

fn outcome(v: Value) -> Outcome {
    match (v.get("ok"), v.get("error")) {
        (Some(ok), _) => Ok(text(ok)),
        (None, Some(err)) => Err(text(err)),
        _ => Ok(v.to_string()),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
