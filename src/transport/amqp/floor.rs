//! The raw AMQP floor for `perf/`: what moving one task-sized message through RabbitMQ costs
//! with this client and nothing of Celery — publish with confirms, consume, ack (one `multiple`
//! ack per 64) — to set celeriac's drain beside.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{queue, AMQPClass};

use crate::config::AmqpUrl;
use crate::rt::{self, IoThread, Notify};

use super::connection::{AmqpError, Connection, WORK};

/// Publishes `n` messages of `body_len` bytes to a private queue, then consumes and acks them
/// all on one connection: `(publish_seconds, drain_seconds)`. From outside the runtime.
#[doc(hidden)]
pub fn raw_floor(url: &str, n: usize, body_len: usize) -> Result<(f64, f64), String> {
    let url = AmqpUrl::parse(url)?;
    rt::block_on(IoThread::global().run(move || async move { run(url, n, body_len).await.map_err(|e| e.to_string()) }))
}

async fn run(url: AmqpUrl, n: usize, body_len: usize) -> Result<(f64, f64), AmqpError> {
    let conn = Connection::open(url, "floor");
    let q = format!("celeriac.floor.{}", uuid::Uuid::new_v4().simple());
    let declare = queue::Declare { queue: q.as_str().into(), auto_delete: false, ..Default::default() };
    conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Declare(declare))).await?;
    let body = vec![b'x'; body_len];
    let props = AMQPProperties::default().with_content_type("application/json".into()).with_delivery_mode(2);
    let started = Instant::now();
    for chunk in 0..n.div_ceil(10_000) {
        let count = (n - chunk * 10_000).min(10_000);
        let confirms: Vec<_> = (0..count).map(|_| conn.publish("", &q, props.clone(), &body)).collect();
        for c in confirms {
            c.await?;
        }
    }
    let published = started.elapsed().as_secs_f64();
    let (got, last, done) = (Rc::new(Cell::new(0usize)), Rc::new(Cell::new(0u64)), Rc::new(Notify::new()));
    let (g, l, d, c) = (got.clone(), last.clone(), done.clone(), conn.clone());
    conn.on_delivery(move |m| {
        g.set(g.get() + 1);
        l.set(m.deliver.delivery_tag);
        if g.get() % 64 == 0 || g.get() == n {
            let ack = basic::Ack { delivery_tag: m.deliver.delivery_tag, multiple: true };
            c.send(WORK, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)));
        }
        if g.get() == n {
            d.notify();
        }
    });
    let started = Instant::now();
    let qos = basic::Qos { prefetch_count: 256, global: true };
    conn.send_sync(WORK, AMQPClass::Basic(basic::AMQPMethod::Qos(qos.clone())));
    let consume = basic::Consume { queue: q.as_str().into(), consumer_tag: "floor".into(), ..Default::default() };
    conn.call(WORK, AMQPClass::Basic(basic::AMQPMethod::Consume(consume))).await?;
    while got.get() < n {
        let seen = done.epoch();
        if got.get() >= n {
            break;
        }
        if rt::timeout_anywhere(Duration::from_secs(60), done.changed(seen)).await.is_none() {
            return Err(AmqpError::ConnectionLost(format!("floor: {} of {n} consumed in 60 s", got.get())));
        }
    }
    // The acks are in once a synchronous method sent after them is answered.
    conn.call(WORK, AMQPClass::Basic(basic::AMQPMethod::Qos(qos))).await?;
    let drained = started.elapsed().as_secs_f64();
    let delete = queue::Delete { queue: q.as_str().into(), ..Default::default() };
    let left = match conn.call(WORK, AMQPClass::Queue(queue::AMQPMethod::Delete(delete))).await? {
        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(ok)) => ok.message_count,
        _ => 0,
    };
    conn.close();
    if left != 0 || last.get() == 0 {
        return Err(AmqpError::ConnectionLost(format!("floor: {left} messages left in the queue")));
    }
    Ok((published, drained))
}
