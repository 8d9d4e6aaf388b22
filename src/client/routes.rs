//! `task_routes`: which queue a task name goes to (exact names and `*` globs, first match wins).

use crate::config::Route;

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    default_queue: String,
}

impl Router {
    pub fn new(routes: Vec<Route>, default_queue: String) -> Self {
        Router { routes, default_queue }
    }

    /// The route for `task`: its queue and, if set, priority.
    pub fn route(&self, task: &str) -> (&str, Option<u8>) {
        match self.routes.iter().find(|r| glob(&r.pattern, task)) {
            Some(r) => (r.queue.as_str(), r.priority),
            None => (self.default_queue.as_str(), None),
        }
    }

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

    fn r(p: &str, q: &str) -> Route {
        Route { pattern: p.into(), queue: q.into(), routing_key: None, priority: None }
    }

    #[test]
    fn exact_then_glob_then_default() {
        let router =
            Router::new(vec![r("proj.tasks.add", "adds"), r("proj.*", "proj"), r("*.mul", "never")], "celery".into());
        assert_eq!(router.route("proj.tasks.add").0, "adds");
        assert_eq!(router.route("proj.tasks.mul").0, "proj");
        assert_eq!(router.route("other.mul").0, "never");
        assert_eq!(router.route("other.x").0, "celery");
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXc") && !glob("ab*ba", "aba"));
    }
}
