//! `task_routes`: where a task name is published (exact names and `*` globs, first match wins).

use crate::config::{QueueSpec, TaskRoute};
use crate::transport::Route;

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<TaskRoute>,
    default_queue: String,
    queues: Vec<QueueSpec>,
}

impl Router {
    /// A router trying `routes` in order, falling back to `default_queue`; a route to one of
    /// `queues` (`task_queues`) with no exchange of its own goes through that queue's exchange.
    pub fn new(routes: Vec<TaskRoute>, default_queue: String, queues: Vec<QueueSpec>) -> Self {
        Router { routes, default_queue, queues }
    }

    /// The route for `task`: the first matching entry's exchange, routing key (default: its
    /// queue), queue and priority, else the default queue through the default exchange.
    pub fn route(&self, task: &str) -> Route {
        self.through_exchange(self.table_route(task))
    }

    /// A route to `queue` (`apply_async(queue=…)`).
    pub fn to_queue(&self, queue: &str) -> Route {
        self.through_exchange(Route::to_queue(queue))
    }

    /// Celery publishes a task for a declared queue to that queue's exchange with its key, and
    /// converts only direct exchanges to the default exchange (`app/amqp.py`).
    fn through_exchange(&self, route: Route) -> Route {
        match self.queues.iter().find(|q| q.name == route.queue) {
            Some(q) if route.exchange.is_empty() && q.exchange_type != "direct" => {
                Route { exchange: q.exchange_name().to_owned(), routing_key: q.key().to_owned(), ..route }
            }
            _ => route,
        }
    }

    fn table_route(&self, task: &str) -> Route {
        match self.routes.iter().find(|r| glob(&r.pattern, task)) {
            Some(r) => Route {
                exchange: r.exchange.clone().unwrap_or_default(),
                routing_key: r.routing_key.clone().unwrap_or_else(|| r.queue.clone()),
                queue: r.queue.clone(),
                priority: r.priority,
            },
            None => Route::to_queue(self.default_queue.clone()),
        }
    }

    /// The queue of a task no route matches (`task_default_queue`).
    pub fn default_queue(&self) -> &str {
        &self.default_queue
    }
}

/// Celery's glob routes: `*` matches any run of characters (fnmatch without classes).
fn glob(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str, q: &str) -> TaskRoute {
        TaskRoute { pattern: p.into(), queue: q.into(), exchange: None, routing_key: None, priority: None }
    }

    #[test]
    fn exact_then_glob_then_default() {
        let router = Router::new(
            vec![r("proj.tasks.add", "adds"), r("proj.*", "proj"), r("*.mul", "never")],
            "celery".into(),
            vec![],
        );
        assert_eq!(router.route("proj.tasks.add").queue, "adds");
        assert_eq!(router.route("proj.tasks.mul").queue, "proj");
        assert_eq!(router.route("other.mul").queue, "never");
        assert_eq!(router.route("other.x"), Route::to_queue("celery"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXc") && !glob("ab*ba", "aba"));
    }

    #[test]
    fn a_route_names_its_exchange_and_routing_key() {
        let rule = TaskRoute {
            exchange: Some("media".into()),
            routing_key: Some("media.video".into()),
            priority: Some(7),
            ..r("proj.encode", "videos")
        };
        let router = Router::new(vec![rule, r("proj.*", "proj")], "celery".into(), vec![]);
        let route = router.route("proj.encode");
        assert_eq!((route.exchange.as_str(), route.routing_key.as_str()), ("media", "media.video"));
        assert_eq!((route.queue.as_str(), route.priority), ("videos", Some(7)));
        assert_eq!(router.route("proj.add").routing_key, "proj", "the routing key defaults to the queue");
        let topic = QueueSpec {
            exchange_type: "topic".into(),
            routing_key: Some("tasks.nd".into()),
            ..QueueSpec::missing("nd")
        };
        let router = Router::new(vec![], "nd".into(), vec![topic]);
        let route = router.route("any");
        assert_eq!(
            (route.exchange.as_str(), route.routing_key.as_str(), route.queue.as_str()),
            ("nd", "tasks.nd", "nd")
        );
        assert_eq!(router.to_queue("other"), Route::to_queue("other"));
    }
}
