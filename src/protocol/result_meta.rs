//! Result meta (`celery/backends/base.py: _get_result_meta`): what a result backend stores for a
//! task id, extended fields included.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ExceptionInfo, State};

/// One stored result, exactly the JSON object Celery writes to `celery-task-meta-<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMeta {
    /// The task state.
    pub status: State,
    /// The return value, an exception dict (FAILURE/RETRY/REVOKED) or custom meta (`update_state`).
    pub result: Value,
    /// The traceback of a failure, if any.
    pub traceback: Option<String>,
    /// Result tuples of subtasks; Celery writes `null` when the meta was stored without a request.
    #[serde(default)]
    pub children: Option<Vec<Value>>,
    /// ISO-8601 with `+00:00` for ready states, `null` otherwise.
    pub date_done: Option<String>,
    /// The group the task belongs to (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The task that sent it (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    // result_extended fields
    /// The task name (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The positional arguments (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// The keyword arguments (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<Value>,
    /// The worker that ran it (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// How often it was retried (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The queue it came from (extended results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The task id.
    pub task_id: String,
    /// Where an rpc:// result goes: the request's `reply_to` queue and its `correlation_id`
    /// (Celery's `destination_for`). Not part of the stored JSON.
    #[serde(skip)]
    pub destination: Option<(String, String)>,
}

impl ResultMeta {
    /// A meta in `status` with no extended fields; `date_done` is set for ready states.
    pub fn new(task_id: &str, status: State, result: Value) -> Self {
        let date_done = status.is_ready().then(now_iso);
        Self::done_at(task_id, status, result, date_done)
    }

    /// As [`new`](Self::new) with `date_done` as given.
    pub fn done_at(task_id: &str, status: State, result: Value, date_done: Option<String>) -> Self {
        ResultMeta {
            status,
            result,
            traceback: None,
            children: Some(Vec::new()),
            date_done,
            group_id: None,
            parent_id: None,
            name: None,
            args: None,
            kwargs: None,
            worker: None,
            retries: None,
            queue: None,
            task_id: task_id.to_owned(),
            destination: None,
        }
    }

    /// The stored exception, for exception states.
    pub fn exception(&self) -> Option<ExceptionInfo> {
        if self.status.is_exception() {
            ExceptionInfo::from_value(&self.result)
        } else {
            None
        }
    }
}

/// A result tuple as `children` and group saves carry it: `[[id, parent], null]` or
/// `[[gid, parent], [child tuples]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultTuple {
    /// The task or group id.
    pub id: String,
    /// The parent result, in a chain.
    pub parent: Option<Box<ResultTuple>>,
    /// `Some` for a group result.
    pub children: Option<Vec<ResultTuple>>,
}

impl ResultTuple {
    /// A plain task result reference.
    pub fn task(id: impl Into<String>) -> Self {
        ResultTuple { id: id.into(), parent: None, children: None }
    }

    /// Encodes to the nested-list form.
    pub fn to_value(&self) -> Value {
        let parent = self.parent.as_ref().map(|p| p.to_value()).unwrap_or(Value::Null);
        let children = match &self.children {
            Some(c) => Value::Array(c.iter().map(ResultTuple::to_value).collect()),
            None => Value::Null,
        };
        Value::Array(vec![Value::Array(vec![Value::String(self.id.clone()), parent]), children])
    }

    /// Decodes the nested-list form; `None` when the shape is wrong.
    pub fn from_value(v: &Value) -> Option<Self> {
        let outer = v.as_array()?;
        let head = outer.first()?.as_array()?;
        let id = head.first()?.as_str()?.to_owned();
        let parent = match head.get(1) {
            None | Some(Value::Null) => None,
            Some(p) => Some(Box::new(ResultTuple::from_value(p)?)),
        };
        let children = match outer.get(1) {
            None | Some(Value::Null) => None,
            Some(c) => Some(c.as_array()?.iter().map(ResultTuple::from_value).collect::<Option<_>>()?),
        };
        Some(ResultTuple { id, parent, children })
    }
}

/// The current UTC time as Celery ≥ 5.4 writes `date_done`.
pub(super) fn now_iso() -> String {
    iso_utc(&chrono::Utc::now())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, written digit by digit: chrono's `format` parses its
/// pattern on every call and was a tenth of a shard's time per result.
fn iso_utc(t: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    fn digits(out: &mut String, mut v: u32, width: usize) {
        let mut buf = [b'0'; 6];
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend(buf[..width].iter().map(|&b| b as char));
    }
    let mut s = String::with_capacity(32);
    digits(&mut s, t.year().clamp(0, 9999) as u32, 4);
    s.push('-');
    digits(&mut s, t.month(), 2);
    s.push('-');
    digits(&mut s, t.day(), 2);
    s.push('T');
    digits(&mut s, t.hour(), 2);
    s.push(':');
    digits(&mut s, t.minute(), 2);
    s.push(':');
    digits(&mut s, t.second(), 2);
    s.push('.');
    // A leap second shows as nanosecond() ≥ 10⁹; Python has no :60 either.
    digits(&mut s, (t.nanosecond() / 1000).min(999_999), 6);
    s.push_str("+00:00");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failure_meta_reads_like_the_capture() {
        let raw = r#"{"status": "FAILURE", "result": {"exc_type": "MyError", "exc_message": ["bad thing", 42], "exc_module": "app2"},
          "traceback": "Traceback (most recent call last):\n", "children": [], "date_done": "2026-11-21T05:19:52.704265+00:00",
          "task_id": "05eea070-3f58-42ab-9b07-84a704c3b5ff"}"#;
        let m: ResultMeta = serde_json::from_str(raw).unwrap();
        assert_eq!(m.status, State::Failure);
        assert_eq!(m.exception().unwrap().exc_type, "MyError");
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["date_done"], "2026-11-21T05:19:52.704265+00:00");
        assert!(back.get("name").is_none(), "extended fields are omitted when unset");
    }

    #[test]
    fn date_done_is_written_as_chrono_would() {
        use chrono::TimeZone;
        for (secs, nanos) in
            [(0, 0), (1_795_250_564, 271_299_123), (253_402_300_799, 999_999_999), (951_782_400, 1_000)]
        {
            let t = chrono::Utc.timestamp_opt(secs, nanos).unwrap();
            assert_eq!(iso_utc(&t), t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string());
        }
    }

    #[test]
    fn result_tuples_round_trip() {
        let g = json!([["g1", null], [[["a", null], null], [["b", null], null]]]);
        assert_eq!(ResultTuple::from_value(&g).unwrap().to_value(), g);
        assert_eq!(ResultTuple::task("x").to_value(), json!([["x", null], null]));
    }
}
