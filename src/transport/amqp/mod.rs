//! kombu's AMQP 0-9-1 transport (`pyamqp://`) on RabbitMQ, over amq-protocol's frame codec and
//! celeriac's own connection on the shard runtime (lapin's reactor would be a second runtime).
//! `amq_protocol` is named only in this folder. This file declares and re-exports only.

mod baton;
mod broker;
mod connection;
mod delayed;
mod fanout;
mod floor;
mod frame;
mod options;
mod reply;
mod table;

pub use baton::AmqpBaton;
pub use broker::{check, AmqpBroker, AmqpConsumer};
pub use connection::AmqpError;
pub use fanout::AmqpSubscription;
pub use floor::raw_floor;
pub use options::AmqpOptions;
pub(crate) use reply::publish_reply;
pub use reply::ReplyQueue;
