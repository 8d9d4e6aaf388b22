//! Layer 0: the Celery 5.7 / kombu 5.7 wire formats as pure functions over bytes.
//!
//! Nothing here touches a socket or a runtime. Transports call these codecs from exactly one
//! place each; the worker and client speak in the models defined here. See `shared/PROTOCOL.md`.

mod compression;
mod content;
mod envelope;
mod error;
mod event;
mod exception;
pub mod json;
mod message;
mod pidbox;
mod result_meta;
mod signature;
mod state;

pub use compression::Compression;
pub use content::{Accept, ContentType, DEFAULT_MAX_BODY};
pub use envelope::{DeliveryInfo, Envelope};
pub use error::ProtocolError;
pub use event::Event;
pub use exception::{repr as py_repr, shorten, ExceptionInfo, EXC_MESSAGE_MAX, REPR_MAX, TRACEBACK_MAX};
pub use message::{encode_json_body, Body, DecodedBody, Embed, Headers, Properties, TaskMessage};
pub use pidbox::{ControlReply, ControlRequest, ReplyTo};
pub use result_meta::{ResultMeta, ResultTuple};
pub use signature::{Signature, SubtaskType};
pub use state::State;
