//! Celery 5.5's native delayed delivery on RabbitMQ (`kombu/transport/native_delayed_delivery.py`):
//! 28 levels of topic exchanges and queues, `celery_delayed_27` … `celery_delayed_0`, where
//! level L's queue holds a message 2^L seconds (`x-message-ttl`) and dead-letters it to the next
//! level; the routing key carries the delay as 28 binary digits (`1.0.1.….<routing key>`), and
//! each level's bindings send a message on only where its bit says it must wait. What leaves
//! level 0 reaches `celery_delayed_delivery`, bound to each topic queue's exchange with
//! `#.<key>`: the message lands in its queue when its countdown is over, with no worker holding
//! it. Used when a quorum queue is in play (Celery's `detect_quorum_queues`).

use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use crate::config::QueueSpec;
use crate::transport::error::TransportError;

use super::connection::{AmqpError, Connection, WORK};

/// Where a delayed message is published.
pub(super) const ENTRY: &str = "celery_delayed_27";
const DELIVERY: &str = "celery_delayed_delivery";
const BITS: u32 = 28;

fn level(l: u32) -> String {
    format!("celery_delayed_{l}")
}

/// kombu's `calculate_routing_key`: the delay's 28 bits, then the key (a prefix an earlier
/// delay left on it is taken off first).
pub(super) fn routing_key(delay_secs: u64, key: &str) -> String {
    let mut key = key;
    let b = key.as_bytes();
    if b.len() >= 2 * BITS as usize
        && (0..BITS as usize).all(|i| matches!(b[2 * i], b'0' | b'1') && b[2 * i + 1] == b'.')
    {
        key = &key[2 * BITS as usize..];
    }
    let delay = delay_secs.min((1 << BITS) - 1);
    let mut out = String::with_capacity(2 * BITS as usize + key.len());
    for i in (0..BITS).rev() {
        out.push(if delay >> i & 1 == 1 { '1' } else { '0' });
        out.push('.');
    }
    out.push_str(key);
    out
}

fn declare_exchange(name: &str) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: name.into(),
        kind: "topic".into(),
        durable: true,
        ..Default::default()
    }))
}

fn bind_exchange(destination: &str, source: &str, key: &str) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
        destination: destination.into(),
        source: source.into(),
        routing_key: key.into(),
        ..Default::default()
    }))
}

fn refused(e: AmqpError) -> TransportError {
    TransportError::Server(format!("declaring native delayed delivery: {e}"))
}

/// Declares the 28 levels and the delivery exchange, as Celery's worker does.
pub(super) async fn declare_topology(conn: &Connection, queue_type: &str) -> Result<(), TransportError> {
    let mut calls = Vec::new();
    let mut key = "1.#".to_owned();
    for l in (0..BITS).rev() {
        let name = level(l);
        calls.push(conn.call(WORK, declare_exchange(&name)));
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from(queue_type)));
        args.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
        // Typed as py-amqp types it (`I` within 32 bits, `l` above), so a Python worker's
        // declaration of the same queue is equivalent.
        args.insert("x-message-ttl".into(), super::table::to_amqp(&((1i64 << l) * 1000).into()));
        let next = if l > 0 { level(l - 1) } else { DELIVERY.to_owned() };
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(next.as_str())));
        if queue_type == "quorum" {
            args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString(LongString::from("at-least-once")));
        }
        let qd = queue::Declare { queue: name.as_str().into(), durable: true, arguments: args, ..Default::default() };
        calls.push(conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(qd))));
        let bind = queue::Bind {
            queue: name.as_str().into(),
            exchange: name.as_str().into(),
            routing_key: key.as_str().into(),
            ..Default::default()
        };
        calls.push(conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Bind(bind))));
        key = format!("*.{key}");
    }
    let mut key = "0.#".to_owned();
    for l in (1..BITS).rev() {
        calls.push(conn.call(WORK, bind_exchange(&level(l - 1), &level(l), &key)));
        key = format!("*.{key}");
    }
    calls.push(conn.call(WORK, declare_exchange(DELIVERY)));
    calls.push(conn.call(WORK, bind_exchange(DELIVERY, &level(0), &key)));
    for c in calls {
        c.await.map_err(refused)?;
    }
    Ok(())
}

/// Binds a topic queue's exchange to the delivery exchange and the queue to its exchange with
/// `#.<key>` (kombu's `bind_queue_to_native_delayed_delivery_exchange`).
pub(super) async fn bind_queue(conn: &Connection, spec: &QueueSpec) -> Result<(), TransportError> {
    let key = if spec.key().starts_with('#') { spec.key().to_owned() } else { format!("#.{}", spec.key()) };
    let bind = queue::Bind {
        queue: spec.name.as_str().into(),
        exchange: spec.exchange_name().into(),
        routing_key: key.as_str().into(),
        ..Default::default()
    };
    let calls = [
        conn.call(WORK, bind_exchange(spec.exchange_name(), DELIVERY, &key)),
        conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Bind(bind))),
    ];
    for c in calls {
        c.await.map_err(refused)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kombus() {
        // kombu: calculate_routing_key(5, "celery")
        let k = routing_key(5, "celery");
        assert_eq!(k, format!("{}1.0.1.celery", "0.".repeat(25)));
        // A retried task's key loses its old prefix.
        assert_eq!(routing_key(2, &k), format!("{}1.0.celery", "0.".repeat(26)));
    }
}
