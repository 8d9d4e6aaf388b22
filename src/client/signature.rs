//! Applying a signature as Celery's `Signature.apply_async(args, **options)` does: partial
//! arguments prepended unless the signature is immutable, kwargs merged, and the signature's
//! options (`task_id`, `queue`, `countdown`, `link`, …) as the call's, under the caller's own.
//! The worker sends link callbacks, errbacks and chain steps this way.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::protocol::{Embed, Signature, SubtaskType};
use crate::{Error, Result};

use super::{AsyncResult, Client, SendOptions};

fn signatures(v: Option<&Value>) -> Option<Vec<Signature>> {
    match v? {
        Value::Array(list) => serde_json::from_value(Value::Array(list.clone())).ok(),
        Value::Null => None,
        one => serde_json::from_value(one.clone()).ok().map(|s| vec![s]),
    }
}

fn seconds(v: &Value) -> Option<std::time::Duration> {
    v.as_f64().filter(|s| s.is_finite() && *s >= 0.0).map(std::time::Duration::from_secs_f64)
}

fn instant(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

/// The send options a signature's `options` ask for.
pub(crate) fn options_of(sig: &Signature) -> SendOptions {
    let o = &sig.options;
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut s = SendOptions {
        task_id: text("task_id"),
        queue: text("queue"),
        exchange: text("exchange"),
        routing_key: text("routing_key"),
        shadow: text("shadow"),
        priority: o.get("priority").and_then(Value::as_u64).map(|p| p.min(255) as u8),
        countdown: o.get("countdown").and_then(seconds),
        eta: o.get("eta").and_then(instant),
        time_limit: o.get("time_limit").and_then(Value::as_f64),
        soft_time_limit: o.get("soft_time_limit").and_then(Value::as_f64),
        root_id: text("root_id"),
        parent_id: text("parent_id"),
        ..SendOptions::default()
    };
    match o.get("expires") {
        Some(v) if v.is_number() => s.expires_in = seconds(v),
        Some(v) => s.expires_at = instant(v),
        None => {}
    }
    if let Some(Value::Object(h)) = o.get("headers") {
        s.headers = h.clone();
    }
    if let (Some(g), Some(i)) = (text("group_id"), o.get("group_index").and_then(Value::as_i64)) {
        s.group = Some((g, i));
    }
    s.embed = Embed {
        callbacks: signatures(o.get("link")),
        errbacks: signatures(o.get("link_error")),
        chain: signatures(o.get("chain")),
        chord: o.get("chord").and_then(|c| serde_json::from_value(c.clone()).ok()),
    };
    s
}

impl Client {
    /// A group (`group(sigs).apply_async(args)`): each member sent with the partial arguments,
    /// the group's id and its place in it (a frozen member keeps the id and index it has), the
    /// caller's parent and root. The result is the group's id.
    fn apply_group(&self, sig: &Signature, partial: &[Value], outer: &SendOptions) -> Result<AsyncResult> {
        let members = sig.tasks().ok_or_else(|| Error::Args(format!("{}: a group without tasks", sig.task)))?;
        let group_id = sig.task_id().map(str::to_owned).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        for (i, member) in members.iter().enumerate() {
            let mut o = options_of(member);
            o.group = o.group.or_else(|| Some((group_id.clone(), i as i64)));
            o.parent_id = outer.parent_id.clone().or(o.parent_id);
            o.root_id = outer.root_id.clone().or(o.root_id);
            self.apply_signature(member, partial, o)?;
        }
        Ok(self.async_result(group_id))
    }

    /// Sends a signature (`sig.apply_async()`): a task signature with its own arguments and
    /// options, or a group of them. Chains and chords are not sent by this client yet.
    pub fn send_signature(&self, sig: &Signature) -> Result<AsyncResult> {
        self.apply_signature(sig, &[], options_of(sig))
    }

    /// Sends `sig` with `partial` arguments and `options` (the signature's own, as
    /// [`options_of`] reads them, with the caller's changes).
    pub(crate) fn apply_signature(
        &self,
        sig: &Signature,
        partial: &[Value],
        options: SendOptions,
    ) -> Result<AsyncResult> {
        if sig.subtask_type == Some(SubtaskType::Group) {
            return self.apply_group(sig, partial, &options);
        }
        if sig.subtask_type.is_some() {
            return Err(Error::Args(format!(
                "{}: sending {:?} signatures is not in this build of celeriac yet",
                sig.task, sig.subtask_type
            )));
        }
        let args = sig.args_with(partial);
        let kwargs: Map<String, Value> = sig.kwargs.clone();
        // Not watched at send: a worker sending a workflow's next step does not wait for it.
        let (msg, route, result) = self.prepare(&sig.task, args, &kwargs, &options, false)?;
        self.broker().publish(&route, msg)?;
        Ok(result)
    }
}
