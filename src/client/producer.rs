//! The client: builds Celery-shaped task messages and publishes them.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::config::Settings;
use crate::events::Dispatcher;
use crate::protocol::{self, json::format_datetime, Headers, Properties, TaskMessage};
use crate::transport::{Broker, Route};
use crate::{Error, Result};

use super::replies::ReplyQueues;
use super::{AsyncResult, Router, SendOptions};

/// A handle for sending tasks and reading results. `Send + Sync`; clones share one connection set.
/// It needs no tasks of its own: a client-only app sends by name to workers of any kind.
///
/// ```
/// use std::time::Duration;
/// use celeriac::{SendOptions, State};
///
/// # fn main() -> celeriac::Result<()> {
/// let app = celeriac::App::builder("caller").result_backend("memory://").build()?;
/// let client = app.client();
/// // Nobody consumes "later": the task waits in the broker, PENDING.
/// let opts = SendOptions::new().queue("later").countdown(Duration::from_secs(60));
/// let r = client.send_task_with("proj.tasks.add", (2, 2), Default::default(), &opts)?;
/// assert_eq!(r.state()?, State::Pending);
/// assert_eq!(client.broker().queue_len("later")?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

#[derive(Debug, Clone)]
struct ClientInner {
    broker: Broker,
    backend: Backend,
    settings: Settings,
    router: Router,
    ignore_result: bool,
    /// `gen<pid>@<host>`, as Python clients write `origin`.
    origin: String,
    /// The client's reply queue name (`reply_to`), fixed per process as in Celery.
    oid: String,
    /// `task_send_sent_event`: a `task-sent` event per task published.
    sent_events: Option<Arc<Dispatcher>>,
    /// Remote-control reply queues kept between calls.
    replies: Arc<ReplyQueues>,
}

impl Client {
    pub(crate) fn new(
        broker: Broker,
        backend: Backend,
        settings: Settings,
        router: Router,
        ignore_result: bool,
    ) -> Self {
        let host = crate::hostname();
        // rpc:// replies come to the backend's queue: it is this process's oid.
        let oid = match &backend {
            crate::backend::Backend::Rpc(b) => b.reply_queue().to_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        Client {
            inner: Arc::new(ClientInner {
                broker,
                backend,
                settings,
                router,
                ignore_result,
                origin: format!("gen{}@{host}", std::process::id()),
                oid,
                sent_events: None,
                replies: Arc::default(),
            }),
        }
    }

    /// The remote-control reply queues this client keeps (shared by its clones).
    pub(super) fn reply_queues(&self) -> &ReplyQueues {
        &self.inner.replies
    }

    /// Sends a `task-sent` event for every task published from now on (`task_send_sent_event`).
    pub(crate) fn with_sent_events(self) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| ClientInner::clone(&shared));
        inner.sent_events = Some(Dispatcher::new(inner.broker.clone(), &inner.origin, Arc::default(), true));
        Client { inner: Arc::new(inner) }
    }

    /// Celery's `task-sent` event of a message about to be published (`None` unless
    /// `task_send_sent_event`); [`emit_sent`](Self::emit_sent) sends it once the broker took it.
    pub(super) fn sent_event(&self, msg: &TaskMessage, route: &Route) -> Option<Map<String, Value>> {
        self.inner.sent_events.as_ref()?;
        let h = &msg.headers;
        let fields = serde_json::json!({
            "uuid": h.id, "name": h.task, "args": h.argsrepr, "kwargs": h.kwargsrepr, "retries": h.retries,
            "eta": h.eta, "expires": h.expires, "queue": route.target_queue(), "exchange": route.exchange,
            "routing_key": route.routing_key, "root_id": h.root_id, "parent_id": h.parent_id,
        });
        match fields {
            Value::Object(fields) => Some(fields),
            _ => None,
        }
    }

    /// Sends the `task-sent` events of messages the broker took.
    pub(super) fn emit_sent(&self, events: impl IntoIterator<Item = Option<Map<String, Value>>>) {
        let Some(d) = &self.inner.sent_events else { return };
        for fields in events.into_iter().flatten() {
            d.send_task("task-sent", fields);
        }
    }

    /// Sends task `name` with positional `args` (a tuple, `()` for none, or a `Vec`).
    pub fn send_task(&self, name: &str, args: impl Serialize) -> Result<AsyncResult> {
        self.send_task_with(name, args, Map::new(), &SendOptions::default())
    }

    /// Sends task `name` with positional and keyword arguments and options.
    pub fn send_task_with(
        &self,
        name: &str,
        args: impl Serialize,
        kwargs: Map<String, Value>,
        options: &SendOptions,
    ) -> Result<AsyncResult> {
        let (msg, route, result) = self.prepare(name, args, &kwargs, options, true)?;
        let sent = self.sent_event(&msg, &route);
        self.inner.broker.publish(&route, msg)?;
        self.emit_sent([sent]);
        Ok(result)
    }

    /// As [`send_task_with`](Self::send_task_with), without blocking a thread while the broker
    /// takes the message: await it from any executor (tokio, glommio, `block_on`).
    pub async fn send_task_async(
        &self,
        name: &str,
        args: impl Serialize,
        kwargs: Map<String, Value>,
        options: &SendOptions,
    ) -> Result<AsyncResult> {
        let (msg, route, result) = self.prepare(name, args, &kwargs, options, true)?;
        let sent = self.sent_event(&msg, &route);
        self.inner.broker.publish_async(&route, msg).await?;
        self.emit_sent([sent]);
        Ok(result)
    }

    /// Sends many calls of task `name` at once (one argument tuple each): on Redis they go out
    /// pipelined in one job of the I/O executor, so loading 100k tasks costs round trips per
    /// batch, not per task. Returns once the broker has all of them. The results are not watched
    /// until their first `get()` (a bulk load rarely waits on each one).
    pub fn send_batch<A: Serialize>(&self, name: &str, calls: impl IntoIterator<Item = A>) -> Result<Vec<AsyncResult>> {
        let (options, kwargs) = (SendOptions::default(), Map::new());
        let (mut msgs, mut results) = (Vec::new(), Vec::new());
        let mut route = self.inner.router.route(name);
        for args in calls {
            let (msg, r, result) = self.prepare(name, args, &kwargs, &options, false)?;
            route = r;
            msgs.push(msg);
            results.push(result);
        }
        let sent: Vec<_> = msgs.iter().map(|m| self.sent_event(m, &route)).collect();
        self.inner.broker.publish_batch(&route, msgs)?;
        self.emit_sent(sent);
        Ok(results)
    }

    /// The message, its route and its result handle for one call. With `watch`, a Redis result
    /// is subscribed to now, before the publish (Celery's `on_task_call`), unless it is ignored.
    pub(super) fn prepare(
        &self,
        name: &str,
        args: impl Serialize,
        kwargs: &Map<String, Value>,
        options: &SendOptions,
        watch: bool,
    ) -> Result<(TaskMessage, Route, AsyncResult)> {
        let args = args_list(name, args)?;
        let (msg, route) = self.build(name, &args, kwargs, options)?;
        let id = msg.headers.id.clone();
        let backend = &self.inner.backend;
        let watch = watch && backend.watches_at_send() && msg.headers.ignore_result != Some(true);
        let watch = if watch { Some(backend.watch(&id)?) } else { None };
        Ok((msg, route, AsyncResult::new(id, self.inner.backend.clone(), watch)))
    }

    /// This client's reply queue (rpc:// results come to it).
    pub(crate) fn oid(&self) -> &str {
        &self.inner.oid
    }

    /// A result handle for a known task id.
    pub fn async_result(&self, task_id: impl Into<String>) -> AsyncResult {
        AsyncResult::new(task_id.into(), self.inner.backend.clone(), None)
    }

    /// The broker this producer publishes to.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// The result store its `AsyncResult`s read.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// How it routes tasks to queues.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Builds the message exactly as Celery 5.7's `as_task_v2` does, and routes it: the
    /// options' queue, exchange and routing key over `task_routes` over the default queue.
    fn build(
        &self,
        name: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
        o: &SendOptions,
    ) -> Result<(TaskMessage, Route)> {
        let mut route = self.inner.router.route(name);
        if let Some(q) = &o.queue {
            // `apply_async(queue=q)`: that queue, by its own name unless a key is given.
            route = Route { priority: route.priority, ..self.inner.router.to_queue(q) };
        }
        if let Some(e) = &o.exchange {
            route.exchange = e.clone();
        }
        if let Some(rk) = &o.routing_key {
            route.routing_key = rk.clone();
            if route.exchange.is_empty() && o.queue.is_none() {
                // The default exchange delivers by key: the key names the queue.
                route.queue = rk.clone();
            }
        }
        let id = o.task_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = Utc::now();
        let eta = o.eta.or_else(|| o.countdown.map(|c| now + c));
        let expires = o.expires_at.or_else(|| o.expires_in.map(|d| now + d));

        let mut h = Headers::new(name, id.clone());
        h.root_id = Some(o.root_id.clone().unwrap_or_else(|| id.clone()));
        h.parent_id = o.parent_id.clone();
        h.shadow = o.shadow.clone();
        h.eta = eta.map(|t| format_datetime(&t.fixed_offset()));
        h.expires = expires.map(|t| format_datetime(&t.fixed_offset()));
        h.set_time_limits(o.time_limit, o.soft_time_limit);
        h.argsrepr = Some(protocol::shorten(&tuple_repr(args), protocol::REPR_MAX).into_owned());
        h.kwargsrepr = Some(
            protocol::shorten(&protocol::py_repr(&Value::Object(kwargs.clone())), protocol::REPR_MAX).into_owned(),
        );
        h.origin = Some(self.inner.origin.clone());
        h.ignore_result = Some(o.ignore_result.unwrap_or(self.inner.ignore_result));
        h.extra = o.headers.clone();
        if let Some((group, index)) = &o.group {
            h.group = Some(group.clone());
            h.group_index = Some(*index);
        }

        let props = Properties {
            correlation_id: Some(id),
            reply_to: Some(o.reply_to.clone().unwrap_or_else(|| self.inner.oid.clone())),
            delivery_mode: 2,
            expiration: expires.map(|t| ((t - now).num_milliseconds().max(0)).to_string()),
            priority: o.priority.or(route.priority).unwrap_or(0).min(9),
        };
        let s = &self.inner.settings;
        let msg = TaskMessage::encode(h, props, s.task_serializer, s.compression, args, kwargs, &o.embed)?;
        Ok((msg, route))
    }
}

pub(super) fn args_list(name: &str, args: impl Serialize) -> Result<Vec<Value>> {
    match serde_json::to_value(args) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(Value::Null) => Ok(Vec::new()),
        Ok(other) => Err(Error::Args(format!(
            "{name}: positional arguments must be a tuple or list (write ({other},) for one argument)"
        ))),
        Err(e) => Err(Error::Args(format!("{name}: arguments cannot be serialized: {e}"))),
    }
}

fn tuple_repr(args: &[Value]) -> String {
    let items: Vec<String> = args.iter().map(protocol::py_repr).collect();
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}
