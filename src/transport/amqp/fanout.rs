//! Broadcasts on AMQP exchanges, as kombu's `Mailbox` and event dispatcher use them:
//! `celery.pidbox` is a non-durable fanout exchange (each worker consumes its own auto-delete
//! queue bound to it, `x-expires` 10 s and `x-message-ttl` 300 s as Celery declares it), and
//! `celeryev` a durable topic exchange. The rest of celeriac speaks kombu envelopes for these
//! (what Redis carries), so messages are unwrapped on the way out and wrapped on the way in.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value};

use crate::config::AmqpUrl;
use crate::protocol::{DeliveryInfo, Envelope, Properties};
use crate::rt::{self, IoThread};
use crate::transport::error::TransportError;

use super::connection::{connection, AmqpError, Connection, IoHeld, WORK};
use super::table;

fn exchange_declare(name: &str) -> AMQPClass {
    // Celery's event exchange is a durable topic exchange; its pidbox exchange is fanout and the
    // replies' (`reply.celery.pidbox`) direct, neither durable.
    let (kind, durable) = match name {
        "celeryev" => ("topic", true),
        n if n.starts_with("reply.") => ("direct", false),
        _ => ("fanout", false),
    };
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: name.into(),
        kind: kind.into(),
        durable,
        ..Default::default()
    }))
}

/// Publishes a kombu envelope's message on `exchange` with `routing_key`, from any thread.
pub(crate) fn publish(
    url: &AmqpUrl,
    declared: &Arc<Mutex<HashSet<String>>>,
    exchange: &str,
    routing_key: &str,
    envelope: &[u8],
) -> Result<(), TransportError> {
    let env = Envelope::<Map<String, Value>>::decode(envelope).map_err(|e| TransportError::Server(e.to_string()))?;
    let body = env.body().map_err(|e| TransportError::Server(e.to_string()))?;
    let p = env.properties();
    let props = AMQPProperties::default()
        .with_content_type(env.content_type().into())
        .with_content_encoding("utf-8".into())
        .with_headers(table::to_table(env.headers()))
        .with_delivery_mode(p.delivery_mode)
        .with_priority(p.priority);
    let (url, declared, exchange, rk) = (url.clone(), declared.clone(), exchange.to_owned(), routing_key.to_owned());
    let job = move || async move {
        let conn = connection(&url);
        let fresh = !declared.lock().unwrap_or_else(|p| p.into_inner()).contains(&exchange);
        if fresh {
            conn.call(WORK, exchange_declare(&exchange))
                .await
                .map_err(|e| TransportError::Server(format!("declaring exchange {exchange:?}: {e}")))?;
            declared.lock().unwrap_or_else(|p| p.into_inner()).insert(exchange.clone());
        }
        conn.publish(&exchange, &rk, props, &body).await.map_err(|e| TransportError::Server(e.to_string()))
    };
    rt::run_here_or_wait(job, |e| tracing::warn!("fanout publish failed: {e}"))
}

/// A live subscription to a broadcast exchange: an exclusive auto-delete queue bound to it,
/// consumed without acks on a connection of its own. Ends when dropped.
pub struct AmqpSubscription {
    rx: flume::Receiver<Vec<u8>>,
    _conn: IoHeld,
}

impl AmqpSubscription {
    /// Subscribes to `exchange` (binding key `#` on a topic exchange); returns once RabbitMQ
    /// confirmed the consumer, or after 10 s with the subscription still being set up.
    pub(crate) fn start(url: &AmqpUrl, exchange: &str) -> AmqpSubscription {
        let key = if exchange == "celeryev" { "#" } else { "" };
        Self::bound(url, exchange, key, &format!("{}.{exchange}", uuid::Uuid::new_v4()))
    }

    /// Binds `queue` (exclusive, auto-delete) to `exchange` with `key` and consumes it (what
    /// `start` does with a fresh name; a remote-control client's reply queue, named as kombu
    /// names it, `<oid>.reply.celery.pidbox`).
    pub(crate) fn bound(url: &AmqpUrl, exchange: &str, key: &str, queue: &str) -> AmqpSubscription {
        let (tx, rx) = flume::unbounded();
        let (url, exchange, key, queue_name) = (url.clone(), exchange.to_owned(), key.to_owned(), queue.to_owned());
        let held = rt::block_on(IoThread::global().run(move || async move {
            let conn = Connection::open(url, "fanout");
            let (ready_tx, ready_rx) = flume::bounded::<()>(1);
            let ex = exchange.clone();
            conn.on_delivery(move |d| {
                let p = &d.properties;
                let headers = p.headers().as_ref().map(table::from_table).unwrap_or_default();
                let info = DeliveryInfo {
                    exchange: d.deliver.exchange.as_str().to_owned(),
                    routing_key: d.deliver.routing_key.as_str().to_owned(),
                    redelivered: false,
                };
                let ct = p.content_type().as_ref().map_or("application/json", |s| s.as_str());
                let ce = p.content_encoding().as_ref().map_or("utf-8", |s| s.as_str());
                let env = Envelope::new(headers, Properties::default(), ct, ce, &d.body, info, String::new());
                let _ = tx.send(env.encode());
            });
            conn.on_connect(move |c| {
                let (c, ex, key, q, ready) = (c.clone(), ex.clone(), key.clone(), queue_name.clone(), ready_tx.clone());
                rt::spawn_local(async move {
                    if let Err(e) = subscribe(&c, &ex, &key, &q).await {
                        tracing::error!("amqp: subscribing to {ex:?}: {e}");
                        return;
                    }
                    let _ = ready.try_send(());
                });
            });
            let _ = rt::timeout_anywhere(Duration::from_secs(10), ready_rx.recv_async()).await;
            IoHeld::keep(conn)
        }));
        AmqpSubscription { rx, _conn: held }
    }

    /// The next message as a kombu envelope, from any executor; `None` once closed.
    pub async fn recv_async(&self) -> Option<Vec<u8>> {
        self.rx.recv_async().await.ok()
    }
}

async fn subscribe(c: &Connection, exchange: &str, key: &str, q: &str) -> Result<(), AmqpError> {
    let mut args = FieldTable::default();
    let (expires, ttl) = if exchange == "celeryev" { (60_000, 5_000) } else { (10_000, 300_000) };
    args.insert("x-expires".into(), AMQPValue::LongInt(expires));
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl));
    let qd =
        queue::Declare { queue: q.into(), exclusive: true, auto_delete: true, arguments: args, ..Default::default() };
    let bind =
        queue::Bind { queue: q.into(), exchange: exchange.into(), routing_key: key.into(), ..Default::default() };
    let consume = basic::Consume { queue: q.into(), consumer_tag: q.into(), no_ack: true, ..Default::default() };
    let replies = [
        c.call(WORK, exchange_declare(exchange)),
        c.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(qd))),
        c.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Bind(bind))),
        c.call(WORK, AMQPClass::Basic(basic::AMQPMethod::Consume(consume))),
    ];
    for r in replies {
        r.await?;
    }
    Ok(())
}
