//! Where a message is published: Celery's route once the router has run (`task_routes`,
//! `apply_async(queue=…, exchange=…, routing_key=…)`), as the transports take it.

/// An exchange, a routing key, the queue the route was made for, and a priority.
///
/// On AMQP the exchange routes by the key. The virtual transports (memory://, Redis) have no
/// exchanges of their own: kombu's default exchange `""` delivers to the queue the routing key
/// names, and any other exchange to the route's queue (kombu would look its bindings up; the
/// router only ever makes routes to queues it names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `""` is the default exchange.
    pub exchange: String,
    /// The routing key to publish with.
    pub routing_key: String,
    /// The queue it lands in (on virtual transports: the list the message is pushed to).
    pub queue: String,
    /// The message priority (0–9) the route asks for, when the sender gave none.
    pub priority: Option<u8>,
}

impl Route {
    /// Straight to `queue` through the default exchange, as Celery 5.7 publishes on Redis.
    pub fn to_queue(queue: impl Into<String>) -> Route {
        let queue = queue.into();
        Route { exchange: String::new(), routing_key: queue.clone(), queue, priority: None }
    }

    /// The queue a virtual transport puts the message in.
    pub fn target_queue(&self) -> &str {
        if self.exchange.is_empty() {
            &self.routing_key
        } else {
            &self.queue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_exchange_delivers_by_routing_key() {
        let r = Route::to_queue("celery");
        assert_eq!((r.exchange.as_str(), r.routing_key.as_str(), r.target_queue()), ("", "celery", "celery"));
        let keyed = Route { routing_key: "other".into(), ..r.clone() };
        assert_eq!(keyed.target_queue(), "other");
        let named = Route { exchange: "tasks".into(), routing_key: "x.y".into(), ..r };
        assert_eq!(named.target_queue(), "celery");
    }
}
