//! Builder methods on [`Signature`]: Celery's `.s()`, `.si()`, `.set(...)`, `.link()`,
//! `.link_error()`, written into the dict's `options` as Celery writes them.

use serde::Serialize;
use serde_json::{json, Value};

use crate::protocol::Signature;

impl Signature {
    /// `task.si(*args)`: a signature whose arguments are never added to.
    pub fn immutable(task: impl Into<String>, args: Vec<Value>) -> Self {
        Signature { immutable: true, ..Signature::new(task, args) }
    }

    /// `sig.set(key=value)`: one apply option (`queue`, `countdown`, `priority`, `expires`, …).
    pub fn set(mut self, key: &str, value: impl Serialize) -> Self {
        self.options.insert(key.to_owned(), json!(value));
        self
    }

    /// Keyword arguments of the call (`sig.kwargs`).
    pub fn with_kwargs(mut self, kwargs: serde_json::Map<String, Value>) -> Self {
        self.kwargs = kwargs;
        self
    }

    /// `sig.link(callback)`: called with this task's result on success.
    pub fn link(mut self, callback: Signature) -> Self {
        append(&mut self, "link", callback);
        self
    }

    /// `sig.link_error(errback)`: called with this task's id on failure.
    pub fn link_error(mut self, errback: Signature) -> Self {
        append(&mut self, "link_error", errback);
        self
    }
}

fn append(sig: &mut Signature, key: &str, other: Signature) {
    let entry = sig.options.entry(key.to_owned()).or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = Value::Array(vec![entry.take()]);
    }
    entry.as_array_mut().expect("made an array").push(json!(other));
}
