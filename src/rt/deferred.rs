//! Work a shard puts off to the end of its current run of tasks, so that what many tasks queue
//! in one run leaves together (Redis result writes: one script call for many): DESIGN §3's
//! "flush when the run queue empties or a size cap is reached", with no timer. A shard's
//! dispatcher (the worker's run loop) declares itself with [`dispatching`] and calls
//! [`run_deferred`] before it parks and after every few tasks; without a dispatcher running, the
//! deferred work runs as soon as the task that queued it yields.

use std::cell::{Cell, RefCell};

type Deferred = Box<dyn FnOnce()>;

thread_local! {
    static QUEUE: RefCell<Vec<Deferred>> = const { RefCell::new(Vec::new()) };
    static DISPATCHING: Cell<bool> = const { Cell::new(false) };
    /// A fallback run is spawned and has not run yet.
    static SPAWNED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` at the end of this shard's current run of tasks. On an executor only.
pub fn defer(f: impl FnOnce() + 'static) {
    QUEUE.with(|q| q.borrow_mut().push(Box::new(f)));
    if !DISPATCHING.get() && !SPAWNED.replace(true) {
        super::spawn_local(async {
            // glommio polls a spawned task at once: go to the back of the run queue first, so
            // what the tasks ready now defer goes along.
            futures_lite::future::yield_now().await;
            SPAWNED.set(false);
            run_deferred();
        });
    }
}

/// Runs everything deferred so far on this shard, in the order it was deferred.
pub fn run_deferred() {
    let queued = QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
    for f in queued {
        f();
    }
}

/// Declares whether this shard's dispatcher is running tasks (and so will call
/// [`run_deferred`]) or is about to park (it runs what is deferred first).
pub fn dispatching(on: bool) {
    DISPATCHING.set(on);
    if !on {
        run_deferred();
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    #[test]
    fn deferred_work_waits_for_the_dispatcher_or_the_next_yield() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().unwrap();
        ex.run(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            // No dispatcher: runs once this task yields.
            let l = log.clone();
            defer(move || l.borrow_mut().push("fallback"));
            assert!(log.borrow().is_empty());
            futures_lite::future::yield_now().await;
            assert_eq!(*log.borrow(), ["fallback"]);
            // A dispatcher: nothing runs until it parks or asks.
            dispatching(true);
            for name in ["a", "b"] {
                let l = log.clone();
                defer(move || l.borrow_mut().push(name));
            }
            futures_lite::future::yield_now().await;
            assert_eq!(log.borrow().len(), 1);
            dispatching(false);
            assert_eq!(*log.borrow(), ["fallback", "a", "b"]);
        });
    }
}
