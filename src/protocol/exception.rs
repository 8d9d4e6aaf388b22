//! Exceptions as Celery stores them for non-pickle serializers (`prepare_exception`):
//! `{"exc_type", "exc_message", "exc_module"}`, which Python re-raises by type name.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The longest repr of arguments Celery writes (`argsrepr_maxsize`, `saferepr`'s cut), and the
/// longest value or error text celeriac puts into a log line.
pub const REPR_MAX: usize = 1024;
/// The longest string argument of a stored exception: a 50 MB argument echoed into an error
/// message must not become a 200 MB FAILURE.
pub const EXC_MESSAGE_MAX: usize = 4096;
/// The longest traceback text stored with a failure.
pub const TRACEBACK_MAX: usize = 64 * 1024;

/// `s` cut to at most `max` bytes on a character boundary, ending in `...` when cut, as
/// Celery's `saferepr` cuts long reprs.
pub fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut cut = max.saturating_sub(3);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}...", &s[..cut]))
}

/// A stored exception. `exc_message` is the Python `exc.args` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    /// The exception class name (`ValueError`).
    pub exc_type: String,
    /// Its arguments (a list, or a string).
    pub exc_message: Value,
    /// The module the class lives in (`builtins`).
    #[serde(default = "builtins")]
    pub exc_module: String,
}

fn builtins() -> String {
    "builtins".to_owned()
}

impl ExceptionInfo {
    /// An exception of `module.type` with one message argument, e.g. `("builtins", "ValueError", "boom")`.
    pub fn new(module: &str, exc_type: &str, message: impl Into<String>) -> Self {
        ExceptionInfo {
            exc_type: exc_type.to_owned(),
            exc_message: json!([message.into()]),
            exc_module: module.to_owned(),
        }
    }

    /// Celery's `NotRegistered(name)` for a task name no worker knows.
    pub fn not_registered(name: &str) -> Self {
        ExceptionInfo { exc_message: json!([name]), ..ExceptionInfo::new("celery.exceptions", "NotRegistered", "") }
    }

    /// Celery's `ChordError(why)`, a chord's body failed without running.
    pub fn chord_error(why: impl Into<String>) -> Self {
        ExceptionInfo::new("celery.exceptions", "ChordError", why)
    }

    /// `ChordError("Dependency <id> raised <repr>")`: the chord's header task `task_id` ended
    /// with `result` (its exception dict, or whatever it stored).
    pub fn chord_dependency(task_id: &str, result: &Value) -> Self {
        let raised = ExceptionInfo::from_value(result).map_or_else(|| repr(result), |e| e.repr());
        ExceptionInfo::chord_error(format!("Dependency {task_id} raised {raised}"))
    }

    /// Reads an exception dict; `None` when `v` is not one.
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        o.get("exc_type")?.as_str()?;
        serde_json::from_value(v.clone()).ok()
    }

    /// The same exception with every string argument at most `max` bytes (see [`shorten`]).
    pub fn bounded(mut self, max: usize) -> Self {
        fn cut(v: &mut Value, max: usize) {
            match v {
                Value::String(s) if s.len() > max => *s = shorten(s, max).into_owned(),
                Value::Array(a) => a.iter_mut().for_each(|v| cut(v, max)),
                Value::Object(o) => o.values_mut().for_each(|v| cut(v, max)),
                _ => {}
            }
        }
        cut(&mut self.exc_message, max);
        self
    }

    /// The dict written into result metas.
    pub fn to_value(&self) -> Value {
        json!({"exc_type": self.exc_type, "exc_message": self.exc_message, "exc_module": self.exc_module})
    }

    /// The message as Python's `str(exc)` shows it: one argument alone, several as a tuple.
    pub fn message(&self) -> String {
        match &self.exc_message {
            Value::Array(a) if a.len() == 1 => text(&a[0]),
            Value::Array(a) if a.is_empty() => String::new(),
            Value::Array(a) => format!("({})", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
            other => text(other),
        }
    }

    /// Python's `repr(exc)`, e.g. `ValueError('boom')`, as events carry it.
    pub fn repr(&self) -> String {
        match &self.exc_message {
            Value::Array(a) => format!("{}({})", self.exc_type, a.iter().map(repr).collect::<Vec<_>>().join(", ")),
            other => format!("{}({})", self.exc_type, repr(other)),
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// A close rendering of Python's `repr` for JSON values (argsrepr, logs and events).
pub fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => {
            format!("{{{}}}", o.iter().map(|(k, v)| format!("'{k}': {}", repr(v))).collect::<Vec<_>>().join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_repr_follow_python() {
        let e = ExceptionInfo::from_value(
            &json!({"exc_type": "MyError", "exc_message": ["bad thing", 42], "exc_module": "app2"}),
        )
        .unwrap();
        assert_eq!(e.message(), "('bad thing', 42)");
        assert_eq!(e.repr(), "MyError('bad thing', 42)");
        assert_eq!(ExceptionInfo::new("builtins", "ValueError", "boom").message(), "boom");
        assert!(ExceptionInfo::from_value(&json!(5)).is_none());
    }

    #[test]
    fn long_texts_are_cut_like_saferepr() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("abcdefghijkl", 10), "abcdefg...");
        assert_eq!(shorten("ééééé", 6), "é...", "never inside a character");
        let big = "x".repeat(50_000_000);
        let e = ExceptionInfo::new("builtins", "TypeError", big.clone()).bounded(EXC_MESSAGE_MAX);
        assert_eq!(e.message().len(), EXC_MESSAGE_MAX);
        let nested = ExceptionInfo { exc_message: json!([[big], {"k": "v"}]), ..e }.bounded(100);
        assert_eq!(nested.exc_message[0][0].as_str().unwrap().len(), 100);
    }
}
