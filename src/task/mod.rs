//! Layer 5: typed tasks. Plain Rust functions (sync, async, closures, or [`blocking`]) whose
//! parameter and return types are the schema; extractors ([`TaskCtx`], [`ShardState`], the
//! [`Client`](crate::Client)) may sit anywhere in the parameter list and never consume a
//! positional argument.
//!
//! Parameter names are given at registration (`.task("proj.tasks.add", ["x", "y"], add)`), so
//! Python callers' keyword arguments (`add.delay(x=4, y=4)`) map onto the same parameters.

mod builtins;
mod ctx;
mod error;
mod extract;
mod handler;
mod outcome;
mod registry;

pub(crate) use builtins::builtins;
pub(crate) use ctx::CtxInner;
pub use ctx::TaskCtx;
pub(crate) use error::Control;
pub use error::{Ignore, Reject, Retry, TaskError};
pub use extract::{FromInvocation, Invocation, ShardState};
pub(crate) use extract::{ShardLocals, StateFactory};
pub(crate) use handler::panic_error;
pub use handler::{blocking, Blocking, Handler};
pub use outcome::{Call, Outcome};
pub use registry::{Registry, TaskEntry, TaskOptions};
