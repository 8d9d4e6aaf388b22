//! The error a task returns: an exception Python can re-raise by type name, with traceback text.

use crate::protocol::ExceptionInfo;

/// A task failure. Build one with [`TaskError::new`] (or a named constructor), or let `?` convert
/// any `std::error::Error` (type name = the Rust type's name, module `celeriac`).
///
/// Not itself a `std::error::Error`, so the blanket conversion stays coherent (as with anyhow).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    // Boxed: a task's `Result` stays one pointer wide on the success path.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    exc: ExceptionInfo,
    traceback: Option<String>,
}

impl TaskError {
    /// An exception `exc_type` from Python's `builtins` (`"ValueError"`, `"KeyError"` …).
    pub fn new(exc_type: &str, message: impl Into<String>) -> Self {
        Self::with_module("builtins", exc_type, message)
    }

    /// An exception of `module.exc_type`; Python imports it if it can, else synthesizes a class of
    /// that name.
    pub fn with_module(module: &str, exc_type: &str, message: impl Into<String>) -> Self {
        TaskError { inner: Box::new(Inner { exc: ExceptionInfo::new(module, exc_type, message), traceback: None }) }
    }

    /// `ValueError(message)`.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::new("ValueError", message)
    }

    /// `TypeError(message)`: what a wrong argument becomes.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }

    /// Attaches traceback text (shown by Python's `AsyncResult.traceback`).
    pub fn with_traceback(mut self, tb: impl Into<String>) -> Self {
        self.inner.traceback = Some(tb.into());
        self
    }

    /// The exception as stored.
    pub fn exception(&self) -> &ExceptionInfo {
        &self.inner.exc
    }

    /// The traceback text, if any.
    pub fn traceback(&self) -> Option<&str> {
        self.inner.traceback.as_deref()
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.inner.exc.exc_type, self.inner.exc.message())
    }
}

impl<E: std::error::Error + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.split('<').next().unwrap_or(full).rsplit("::").next().unwrap_or(full);
        TaskError::with_module("celeriac", short, e.to_string())
    }
}
