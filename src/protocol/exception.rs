//! Exceptions as Celery stores them for non-pickle serializers (`prepare_exception`):
//! `{"exc_type", "exc_message", "exc_module"}`, which Python re-raises by type name.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A stored exception. `exc_message` is the Python `exc.args` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub exc_type: String,
    pub exc_message: Value,
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

    /// Reads an exception dict; `None` when `v` is not one.
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        o.get("exc_type")?.as_str()?;
        serde_json::from_value(v.clone()).ok()
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
}
