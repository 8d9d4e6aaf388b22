//! `task_routes`: where a task name is published (exact names and `*` globs, first match wins).

use crate::config::TaskRoute;
use crate::transport::Route;

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<TaskRoute>,
    default_queue: String,
}

impl Router {
    /// A router trying `routes` in order, falling back to `default_queue`.
    pub fn new(routes: Vec<TaskRoute>, default_queue: String) -> Self {
        Router { routes, default_queue }
    }

    /// The route for `task`: the first matching entry's exchange, routing key (default: its
    /// queue), queue and priority, else the default queue through the default exchange.
    pub fn route(&self, task: &str) -> Route {
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
        let router =
            Router::new(vec![r("proj.tasks.add", "adds"), r("proj.*", "proj"), r("*.mul", "never")], "celery".into());
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
        let router = Router::new(vec![rule, r("proj.*", "proj")], "celery".into());
        let route = router.route("proj.encode");
        assert_eq!((route.exchange.as_str(), route.routing_key.as_str()), ("media", "media.video"));
        assert_eq!((route.queue.as_str(), route.priority), ("videos", Some(7)));
        assert_eq!(router.route("proj.add").routing_key, "proj", "the routing key defaults to the queue");
    }
}
