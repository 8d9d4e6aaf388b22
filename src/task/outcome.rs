//! What a task call produced.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::TaskError;

/// How a call proceeds: done already (sync bodies, no allocation) or a future to drive.
pub enum Call {
    /// The body ran already.
    Ready(Outcome),
    /// The body's future.
    Pending(Pin<Box<dyn Future<Output = Outcome>>>),
}

/// The result of running a task body.
#[derive(Debug)]
pub enum Outcome {
    /// The return value, serialized.
    Success(Value),
    /// The task failed (an `Err`, a wrong argument type, a panic).
    Failure(TaskError),
}

impl Outcome {
    pub(crate) fn from_value<T: serde::Serialize>(v: T) -> Outcome {
        match serde_json::to_value(v) {
            Ok(v) => Outcome::Success(v),
            Err(e) => Outcome::Failure(TaskError::with_module(
                "kombu.exceptions",
                "EncodeError",
                format!("cannot serialize the return value: {e}"),
            )),
        }
    }

    pub(crate) fn from_result<T: serde::Serialize, E: Into<TaskError>>(r: Result<T, E>) -> Outcome {
        match r {
            Ok(v) => Outcome::from_value(v),
            Err(e) => Outcome::Failure(e.into()),
        }
    }
}
