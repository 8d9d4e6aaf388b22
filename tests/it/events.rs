//! Events (issue 18), stamped over every transport: a worker with task events on is seen by
//! celeriac's own `events::Receiver` (worker-online and heartbeats, the task events of a success
//! and a failure, batched as `task.multi`), and `events::State` follows them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac::events::{Clock, Receiver, State};

use crate::semantics::Env;

fn a_worker_is_seen_by_the_receiver(env: &Env) {
    let app = env.base("ev").build().unwrap();
    let clock = Arc::new(Clock::default());
    let receiver = Receiver::new(&app.client().broker().clone(), clock.clone());
    let w = app.worker().concurrency(1).task_events(true).start().unwrap();
    let node = w.hostname().to_owned();
    let ok = app.send_task("t.add", (1, 2)).unwrap();
    let bad = app.send_task("t.fail", ("boom",)).unwrap();
    let mut state = State::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = |s: &State| {
        s.tasks.get(ok.id()).is_some_and(|t| t.state == "SUCCESS")
            && s.tasks.get(bad.id()).is_some_and(|t| t.state == "FAILURE")
            && s.workers.get(&node).is_some_and(|w| w.last_heartbeat.is_some())
    };
    while !done(&state) {
        assert!(Instant::now() < deadline, "events seen: {state:#?}");
        for e in receiver.next_within(Duration::from_millis(200)).expect("the subscription is live") {
            state.apply(&e);
        }
    }
    let t = &state.tasks[ok.id()];
    assert_eq!((t.name.as_deref(), t.result.as_deref()), (Some("t.add"), Some("3")));
    assert!(t.runtime.is_some_and(|r| r >= 0.0) && t.timestamps.contains_key("STARTED"), "{t:#?}");
    assert!(state.tasks[bad.id()].exception.as_deref().is_some_and(|e| e.contains("boom")), "{state:#?}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(state.workers[&node].alive(now), "{:#?}", state.workers[&node]);
    assert!(clock.value() > 0, "received clocks adjust ours");
    w.shutdown();
    // worker-offline is the last thing the worker says.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !state.workers[&node].offline {
        assert!(Instant::now() < deadline, "no worker-offline");
        for e in receiver.next_within(Duration::from_millis(200)).expect("live") {
            state.apply(&e);
        }
    }
}

/// `task_send_sent_event`: the client says `task-sent` for each task it publishes, with the
/// fields Celery's client gives it, and the receiver's state has the task PENDING until a
/// worker takes it.
fn the_client_sends_task_sent(env: &Env) {
    let app = env.base("sent").configure(|c| c.task_send_sent_event = true).build().unwrap();
    let receiver = Receiver::new(&app.client().broker().clone(), Arc::new(Clock::default()));
    let r = app.send_task("t.add", (4, 5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        assert!(Instant::now() < deadline, "no task-sent");
        let batch = receiver.next_within(Duration::from_millis(200)).expect("live");
        if let Some(e) = batch.into_iter().find(|e| e.kind == "task-sent") {
            break e;
        }
    };
    assert_eq!(sent.fields["uuid"], r.id());
    assert_eq!((sent.fields["name"].as_str(), sent.fields["args"].as_str()), (Some("t.add"), Some("(4, 5)")));
    assert!(sent.fields["queue"].as_str().is_some_and(|q| !q.is_empty()), "{sent:?}");
    assert_eq!(sent.fields["retries"], 0);
    assert!(sent.hostname.starts_with("gen"), "a client's origin names it: {sent:?}");
    let mut state = State::default();
    state.apply(&sent);
    assert_eq!(state.tasks[r.id()].state, "PENDING");
}

stamp!(a_worker_is_seen_by_the_receiver, the_client_sends_task_sent);
