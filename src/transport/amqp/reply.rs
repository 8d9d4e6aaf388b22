//! What the rpc:// result backend needs from AMQP (`celery/backends/rpc.py`): a worker publishes
//! each state of a task to the default exchange with the request's `reply_to` as routing key and
//! its `correlation_id`; a client consumes its own reply queue (named by its oid, durable,
//! auto-delete, `x-expires` = `result_expires`), without acks.

use std::future::Future;
use std::time::Duration;

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};

use crate::config::AmqpUrl;
use crate::rt::{self, IoThread};
use crate::transport::error::TransportError;

use super::connection::{connection, AmqpError, Connection, IoHeld, WORK};

/// Publishes one reply on this executor's connection to `url`; resolves once RabbitMQ confirmed
/// it. `persistent` is Celery's `result_persistent` (delivery mode 2, else 1). On an executor.
pub(crate) fn publish_reply(
    url: &AmqpUrl,
    reply_to: &str,
    correlation_id: &str,
    content_type: &str,
    body: &[u8],
    persistent: bool,
) -> impl Future<Output = Result<(), TransportError>> + 'static {
    let props = AMQPProperties::default()
        .with_content_type(content_type.into())
        .with_content_encoding("utf-8".into())
        .with_headers(FieldTable::default())
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_priority(0)
        .with_correlation_id(correlation_id.into());
    let confirm = connection(url).publish("", reply_to, props, body);
    async move { confirm.await.map_err(TransportError::from) }
}

/// A client's reply queue, consumed on a connection of the I/O executor; each message goes to
/// the handler as `(correlation_id, content_type, body)`. Ends when dropped.
pub struct ReplyQueue {
    _conn: IoHeld,
}

impl ReplyQueue {
    /// Declares `name` as Celery's rpc binding and consumes it; returns once RabbitMQ confirmed
    /// the consumer (or after 10 s, still trying). From outside the runtime.
    pub fn start(
        url: &AmqpUrl,
        name: &str,
        expires: Option<Duration>,
        on_reply: impl Fn(String, String, Vec<u8>) + Send + 'static,
    ) -> ReplyQueue {
        let (url, name) = (url.clone(), name.to_owned());
        let held = rt::block_on(IoThread::global().run(move || async move {
            let conn = Connection::open(url, "replies");
            conn.on_delivery(move |d| {
                let p = &d.properties;
                let id = p.correlation_id().as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default();
                let ct = p.content_type().as_ref().map_or("application/json", |s| s.as_str()).to_owned();
                on_reply(id, ct, d.body.to_vec());
            });
            let (ready_tx, ready_rx) = flume::bounded::<()>(1);
            conn.on_connect(move |c| {
                let (c, q, ready) = (c.clone(), name.clone(), ready_tx.clone());
                rt::spawn_local(async move {
                    match consume(&c, &q, expires).await {
                        Ok(()) => {
                            let _ = ready.try_send(());
                        }
                        Err(e) => tracing::error!("rpc results: consuming {q:?}: {e}"),
                    }
                });
            });
            let _ = rt::timeout_anywhere(Duration::from_secs(10), ready_rx.recv_async()).await;
            IoHeld::keep(conn)
        }));
        ReplyQueue { _conn: held }
    }
}

async fn consume(c: &Connection, q: &str, expires: Option<Duration>) -> Result<(), AmqpError> {
    let mut args = FieldTable::default();
    if let Some(e) = expires {
        args.insert("x-expires".into(), AMQPValue::LongInt(e.as_millis().min(i32::MAX as u128) as i32));
    }
    let qd =
        queue::Declare { queue: q.into(), durable: true, auto_delete: true, arguments: args, ..Default::default() };
    let consume = basic::Consume { queue: q.into(), consumer_tag: q.into(), no_ack: true, ..Default::default() };
    let replies = [
        c.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(qd))),
        c.call(WORK, AMQPClass::Basic(basic::AMQPMethod::Consume(consume))),
    ];
    for r in replies {
        r.await?;
    }
    Ok(())
}
