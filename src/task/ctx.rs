//! The request context a task can ask for (Celery's `self.request`).

use std::rc::Rc;
use std::sync::Arc;

use crate::protocol::{DeliveryInfo, Headers};

/// What a running task knows about its own request. Cheap to clone (shared, shard-local).
#[derive(Debug, Clone)]
pub struct TaskCtx(pub(crate) Rc<CtxInner>);

#[derive(Debug)]
pub(crate) struct CtxInner {
    pub headers: Headers,
    pub delivery_info: DeliveryInfo,
    pub hostname: Arc<str>,
    pub shard: usize,
}

impl TaskCtx {
    pub(crate) fn new(headers: Headers, delivery_info: DeliveryInfo, hostname: Arc<str>, shard: usize) -> Self {
        TaskCtx(Rc::new(CtxInner { headers, delivery_info, hostname, shard }))
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.0.headers.id
    }
    /// The registered task name.
    pub fn name(&self) -> &str {
        &self.0.headers.task
    }
    /// How many times this task has been retried.
    pub fn retries(&self) -> u32 {
        self.0.headers.retries
    }
    /// The first task of the workflow.
    pub fn root_id(&self) -> Option<&str> {
        self.0.headers.root_id.as_deref()
    }
    /// The task that sent this one.
    pub fn parent_id(&self) -> Option<&str> {
        self.0.headers.parent_id.as_deref()
    }
    /// The group this task is a member of.
    pub fn group_id(&self) -> Option<&str> {
        self.0.headers.group.as_deref()
    }
    /// Position inside the group.
    pub fn group_index(&self) -> Option<i64> {
        self.0.headers.group_index
    }
    /// ETA as sent (ISO-8601).
    pub fn eta(&self) -> Option<&str> {
        self.0.headers.eta.as_deref()
    }
    /// Expiry as sent (ISO-8601).
    pub fn expires(&self) -> Option<&str> {
        self.0.headers.expires.as_deref()
    }
    /// Exchange, routing key and redelivered flag of the delivery.
    pub fn delivery_info(&self) -> &DeliveryInfo {
        &self.0.delivery_info
    }
    /// The worker's node name (`celery@host`).
    pub fn hostname(&self) -> &str {
        &self.0.hostname
    }
    /// The shard running the task.
    pub fn shard(&self) -> usize {
        self.0.shard
    }
    /// All headers, custom ones included.
    pub fn headers(&self) -> &Headers {
        &self.0.headers
    }
}
