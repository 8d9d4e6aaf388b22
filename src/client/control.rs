//! Remote-control broadcasts as `celery.app.control.Control` sends them: a pidbox request on the
//! `celery.pidbox` fanout exchange. Fire-and-forget commands only (no reply is collected).

use serde_json::{json, Map, Value};

use crate::protocol::{ControlRequest, Envelope, Properties};
use crate::Result;

use super::Client;

impl Client {
    /// Revokes `task_id` on every worker (`app.control.revoke(task_id, terminate=…,
    /// signal=…)`): a worker that has it reserved or scheduled drops it and stores REVOKED; one
    /// that receives it later does too (for as long as it remembers the id); with `terminate`, a
    /// running task is stopped. `signal` is accepted for Celery's sake (`"SIGTERM"`, `"SIGKILL"`)
    /// and reported, since tasks run in the worker's own threads rather than child processes.
    pub fn revoke(&self, task_id: &str, terminate: bool, signal: Option<&str>) -> Result<()> {
        self.broadcast("revoke", json!({"task_id": task_id, "terminate": terminate, "signal": signal}))
    }

    /// Changes the rate limit of task type `task_name` on every worker
    /// (`app.control.rate_limit(task_name, rate_limit)`); `"0"` or an empty string removes it.
    pub fn rate_limit(&self, task_name: &str, rate_limit: &str) -> Result<()> {
        self.broadcast("rate_limit", json!({"task_name": task_name, "rate_limit": rate_limit}))
    }

    /// Publishes a control command to every worker, without asking for replies.
    pub fn broadcast(&self, method: &str, arguments: Value) -> Result<()> {
        let arguments = match arguments {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let req = ControlRequest {
            method: method.to_owned(),
            arguments,
            destination: None,
            pattern: None,
            matcher: None,
            ticket: None,
            reply_to: None,
        };
        let body = serde_json::to_vec(&req).expect("control requests are JSON values");
        let headers = json!({"clock": 0, "expires": 0});
        let env = Envelope::json(headers, Properties::default(), &body, "celery.pidbox", "");
        Ok(self.broker().publish_fanout("celery.pidbox", "", env.encode())?)
    }
}
