//! The AMQP transport against a real rabbitmq-server (issue 16): Celery's entities, round trips
//! with Redis results, a burst drained to zero ready and unacked, header types, priorities.

use std::time::Duration;

use celeriac::{SendOptions, State, TaskRef};
use serde_json::{json, Map};

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("t.add");

#[test]
fn round_trip_and_entities_are_celerys() {
    let results = RedisServer::start();
    let app = on_rabbit("rt", &results).build().unwrap();
    let client = app.client();
    // Published with no worker: the queue, its exchange and binding exist and hold it.
    let r = client.send_task_with("t.add", (4, 4), Map::new(), &SendOptions::new().header("x-custom", "v")).unwrap();
    assert_eq!(rabbit().ready("q.rt"), 1);
    let queues = rabbit().ctl(&["list_queues", "-q", "--no-table-headers", "name", "durable"]);
    assert!(queues.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["q.rt", "true"]), "{queues}");
    let bindings =
        rabbit().ctl(&["list_bindings", "-q", "--no-table-headers", "source_name", "destination_name", "routing_key"]);
    assert!(
        bindings.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["q.rt", "q.rt", "q.rt"]),
        "{bindings}"
    );
    assert_eq!(r.state().unwrap(), State::Pending);

    let w = app.worker().concurrency(2).start().unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 8);
    assert_eq!(ADD.delay(&client, (20, 22)).unwrap().get(T).unwrap(), 42);
    let e = client.send_task("t.fail", ("nope",)).unwrap().get::<()>(T).unwrap_err();
    assert_eq!(failure(e).exception.exc_type, "ValueError");
    w.shutdown();
    assert_eq!(rabbit().ready("q.rt"), 0);
}

#[test]
fn a_burst_drains_to_nothing_ready_or_unacked() {
    let results = RedisServer::start();
    let app = on_rabbit("burst", &results).build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    let sent: Vec<_> = (0..2000).map(|i| client.send_task("t.add", (i, 1)).unwrap()).collect();
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(r.get::<i64>(T).unwrap(), i as i64 + 1);
    }
    w.shutdown();
    assert_eq!(rabbit().ready("q.burst"), 0, "messages left ready or unacked");
}

#[test]
fn acks_late_and_headers_keep_their_types() {
    let results = RedisServer::start();
    let app = on_rabbit("late", &results).configure(|c| c.task_acks_late = true).build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    let opts = SendOptions::new().header("n", 5).header("f", 1.5).header("list", json!([null, true, "x"]));
    let r = client.send_task_with("t.whoami", ("x",), Map::new(), &opts).unwrap();
    r.get::<serde_json::Value>(T).unwrap();
    let slow: Vec<_> = (0..20).map(|_| client.send_task("t.sleep", (20,)).unwrap()).collect();
    for r in slow {
        r.get::<u64>(T).unwrap();
    }
    w.shutdown();
    assert_eq!(rabbit().ready("q.late"), 0);
}

#[test]
fn rpc_results_reach_the_client_that_sent_the_task() {
    let app = base("rpc")
        .broker(&rabbit().url())
        .result_backend("rpc://")
        .configure(|c| {
            c.task_default_queue = "q.rpc".into();
            c.task_track_started = true;
        })
        .build()
        .unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    assert_eq!(ADD.delay(&client, (20, 22)).unwrap().get(T).unwrap(), 42);
    let e = client.send_task("t.fail", ("nope",)).unwrap().get::<()>(T).unwrap_err();
    assert_eq!(failure(e).exception.exc_type, "ValueError");
    // STARTED arrives as a message too, before the outcome.
    let slow = client.send_task("t.sleep", (300,)).unwrap();
    let deadline = std::time::Instant::now() + T;
    while slow.state().unwrap() != State::Started {
        assert!(std::time::Instant::now() < deadline, "STARTED never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(slow.get::<u64>(T).unwrap(), 300);
    assert_eq!(slow.state().unwrap(), State::Success);
    let many: Vec<_> = (0..500).map(|i| ADD.delay(&client, (i, 1)).unwrap()).collect();
    for (i, r) in many.iter().enumerate() {
        assert_eq!(r.get(T).unwrap(), i as i64 + 1);
    }
    w.shutdown();
    assert_eq!(rabbit().ready("q.rpc"), 0);
    // A config that cannot work says so at start.
    let bad = base("rpc2").broker("memory://").result_backend("rpc://").build().err().expect("rpc needs amqp");
    assert!(bad.to_string().contains("needs an amqp:// broker_url"), "{bad}");
}
