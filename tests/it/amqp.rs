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
    // A message the worker cannot run is answered over rpc:// too (Celery builds the request's
    // reply_to from the message for it).
    let unknown = client.send_task("t.nope", (1,)).unwrap().get::<()>(T).unwrap_err();
    assert_eq!(failure(unknown).exception.exc_type, "NotRegistered");
    let many: Vec<_> = (0..500).map(|i| ADD.delay(&client, (i, 1)).unwrap()).collect();
    for (i, r) in many.iter().enumerate() {
        assert_eq!(r.get(T).unwrap(), i as i64 + 1);
    }
    // Chains and groups work over rpc://; chords are refused before anything is sent, as Celery's
    // rpc backend refuses them.
    let flow = ADD.s((1, 1)).unwrap() | celeriac::Signature::new("t.add", vec![serde_json::json!(1)]);
    assert_eq!(client.send_signature(&flow).unwrap().get::<i64>(T).unwrap(), 3);
    let g = celeriac::group(vec![ADD.s((1, 1)).unwrap(), ADD.s((2, 2)).unwrap()]);
    assert_eq!(client.send_signature(&g).unwrap().get::<Vec<i64>>(T).unwrap(), vec![2, 4]);
    let c =
        celeriac::chord(vec![ADD.s((1, 1)).unwrap()], celeriac::Signature::new("t.add", vec![serde_json::json!(1)]));
    let refused = client.send_signature(&c).unwrap_err().to_string();
    assert!(refused.contains("rpc result backend does not support chords"), "{refused}");
    w.shutdown();
    assert_eq!(rabbit().ready("q.rpc"), 0);
    // A config that cannot work says so at start.
    let bad = base("rpc2").broker("memory://").result_backend("rpc://").build().err().expect("rpc needs amqp");
    assert!(bad.to_string().contains("needs an amqp:// broker_url"), "{bad}");
}

#[test]
fn a_queue_declared_with_other_arguments_fails_the_worker_start_with_rabbitmqs_words() {
    let results = RedisServer::start();
    let plain = on_rabbit("pre", &results).build().unwrap();
    plain.client().send_task("t.add", (1, 1)).unwrap();
    let prio = on_rabbit("pre", &results).configure(|c| c.task_queue_max_priority = Some(10)).build().unwrap();
    let e = prio.worker().start().err().expect("the start must fail");
    let text = e.to_string();
    assert!(text.contains("PRECONDITION_FAILED") && text.contains("x-max-priority"), "{text}");
    // The client's publish says the same.
    let e = prio.client().send_task("t.add", (1, 1)).unwrap_err().to_string();
    assert!(e.contains("PRECONDITION_FAILED"), "{e}");
    // The plain worker drains it.
    let w = plain.worker().start().unwrap();
    let deadline = std::time::Instant::now() + T;
    while rabbit().ready("q.pre") > 0 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    w.shutdown();
}

#[test]
fn priorities_on_an_x_max_priority_queue_run_higher_first() {
    let results = RedisServer::start();
    let app = on_rabbit("prio", &results).configure(|c| c.task_queue_max_priority = Some(10)).build().unwrap();
    let client = app.client();
    let rs: Vec<_> = [1u8, 9, 5]
        .iter()
        .map(|p| {
            client.send_task_with("t.whoami", (p.to_string(),), Map::new(), &SendOptions::new().priority(*p)).unwrap()
        })
        .collect();
    let w = app.worker().concurrency(1).prefetch_multiplier(1).start().unwrap();
    for r in &rs {
        r.get::<serde_json::Value>(T).unwrap();
    }
    w.shutdown();
    let done = |r: &celeriac::AsyncResult| client.backend().get(r.id()).unwrap().and_then(|m| m.date_done).unwrap();
    let (low, high, mid) = (done(&rs[0]), done(&rs[1]), done(&rs[2]));
    assert!(high <= mid && mid <= low, "priority 9 at {high}, 5 at {mid}, 1 at {low}");
}

/// A RabbitMQ restart while a worker drains acks_late tasks: the worker reconnects, declares and
/// consumes again, and every task's result arrives (those in flight at the restart run again, as
/// at-least-once delivery promises); the queue is empty at the end.
#[test]
fn a_broker_restart_under_load_loses_no_task() {
    let node = RabbitServer::start();
    let results = RedisServer::start();
    let app = base("restart")
        .broker(&node.url())
        .result_backend(&results.url())
        .configure(|c| c.task_acks_late = true)
        .build()
        .unwrap();
    let client = app.client();
    let n = 5000;
    let rs = client.send_batch("t.hog", (0..n).map(|_| (1u64,))).unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    let deadline = std::time::Instant::now() + T;
    while w.stats().processed < 500 {
        assert!(std::time::Instant::now() < deadline, "the worker is not draining");
        std::thread::sleep(Duration::from_millis(5));
    }
    node.restart(Duration::from_millis(500));
    let at_restart = w.stats().processed;
    assert!(at_restart < n as u64, "the drain ended before the restart ({at_restart} processed)");
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get::<u64>(Duration::from_secs(90)).unwrap(), 1, "task {i} lost");
    }
    let stats = w.shutdown();
    assert!(stats.processed >= n as u64, "{} processed", stats.processed);
    assert_eq!(node.ready("celery"), 0);
}

#[test]
fn amqps_with_the_nodes_ca_and_a_clear_error_without_it() {
    let node = RabbitServer::start_tls();
    let results = RedisServer::start();
    let port = node.tls_port.unwrap();
    let ca = node.ca_file().display().to_string().replace('/', "%2F");
    let url = format!("amqps://guest:guest@127.0.0.1:{port}//?ssl_ca_certs={ca}");
    let app = base("tls").broker(&url).result_backend(&results.url()).build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(ADD.delay(&app.client(), (2, 3)).unwrap().get(T).unwrap(), 5);
    w.shutdown();
    // The same node without its CA: the start fails and says why.
    let bad = base("tls")
        .broker(&format!("amqps://guest:guest@127.0.0.1:{port}//"))
        .result_backend(&results.url())
        .configure(|c| c.broker_connection_max_retries = 1)
        .build()
        .unwrap();
    let e = bad.worker().start().err().expect("an untrusted certificate must fail the start").to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // A login that RabbitMQ refuses is fatal at once, with its words.
    let refused = base("tls")
        .broker(&format!("amqps://guest:wrong@127.0.0.1:{port}//?ssl_ca_certs={ca}"))
        .result_backend(&results.url())
        .build()
        .unwrap();
    let e = refused.worker().start().err().expect("a wrong password must fail the start").to_string();
    assert!(e.contains("ACCESS_REFUSED"), "{e}");
}

/// RabbitMQ cancels a consumer whose queue is deleted (consumer_cancel_notify): the worker
/// declares the queue again, consumes again, and runs what is sent afterwards.
#[test]
fn a_deleted_queue_is_declared_and_consumed_again() {
    let results = RedisServer::start();
    let app = on_rabbit("cancel", &results).build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(ADD.delay(&client, (1, 1)).unwrap().get(T).unwrap(), 2);
    rabbit().ctl(&["delete_queue", "q.cancel"]);
    let deadline = std::time::Instant::now() + T;
    // Until the worker declared it again, a publish may land nowhere: send until one comes back.
    loop {
        let r = ADD.delay(&client, (2, 2)).unwrap();
        if let Ok(v) = r.get(Duration::from_secs(2)) {
            assert_eq!(v, 4);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the worker never consumed the queue again");
    }
    w.shutdown();
}

#[test]
fn virtual_hosts_and_what_rabbitmq_refuses() {
    let results = RedisServer::start();
    rabbit().ctl(&["add_vhost", "celeriac-vh"]);
    rabbit().ctl(&["set_permissions", "-p", "celeriac-vh", "guest", ".*", ".*", ".*"]);
    let url = format!("amqp://guest:guest@127.0.0.1:{}/celeriac-vh", rabbit().port);
    let app = base("vh").broker(&url).result_backend(&results.url()).build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(ADD.delay(&app.client(), (3, 4)).unwrap().get(T).unwrap(), 7);
    w.shutdown();
    let queues = rabbit().ctl(&["list_queues", "-p", "celeriac-vh", "-q", "--no-table-headers", "name"]);
    assert!(queues.lines().any(|l| l.trim() == "celery"), "{queues}");
    // A virtual host that does not exist fails the start at once, naming it.
    let missing = format!("amqp://guest:guest@127.0.0.1:{}/no-such-vhost", rabbit().port);
    let e = base("vh").broker(&missing).result_backend(&results.url()).build().unwrap().worker().start();
    let e = e.err().expect("a missing virtual host must fail the start").to_string();
    assert!(e.contains("no-such-vhost"), "{e}");
    // Publishing to an exchange that does not exist: RabbitMQ's NOT_FOUND, and the client goes on.
    let client = app.client();
    let e = client
        .send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().exchange("no.such.exchange"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOT_FOUND") && e.contains("no.such.exchange"), "{e}");
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(ADD.delay(&client, (1, 1)).unwrap().get(T).unwrap(), 2);
    w.shutdown();
}

/// Heartbeats keep an idle connection: with a 1 s heartbeat negotiated, RabbitMQ closes a
/// connection that sends nothing for 2 s. After 4 idle seconds the worker's connections are
/// the same ones (same client ports) and still serve.
#[test]
fn heartbeats_keep_idle_connections_open() {
    let results = RedisServer::start();
    let url = format!("amqp://guest:guest@127.0.0.1:{}//?heartbeat=1", rabbit().port);
    let app = base("hb")
        .broker(&url)
        .result_backend(&results.url())
        .configure(|c| c.task_default_queue = "q.hb".into())
        .build()
        .unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(ADD.delay(&app.client(), (1, 1)).unwrap().get(T).unwrap(), 2);
    let ours = || {
        let mut ports: Vec<String> = rabbit()
            .ctl(&["list_connections", "-q", "--no-table-headers", "peer_port", "timeout"])
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("1"))
            .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
            .collect();
        ports.sort();
        ports
    };
    let before = ours();
    assert!(!before.is_empty(), "no connection negotiated a 1 s heartbeat");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ours(), before, "a connection was dropped and made again while idle");
    assert_eq!(ADD.delay(&app.client(), (2, 2)).unwrap().get(T).unwrap(), 4);
    w.shutdown();
}

/// `add_consumer` for a queue RabbitMQ holds with other arguments: the declaration fails with
/// RabbitMQ's words in the log, the queue is dropped from what the worker consumes, and the
/// worker goes on with its own queue (a failed declare closes the channel; it must not loop).
#[test]
fn a_consumer_added_for_a_queue_declared_otherwise_is_dropped_and_the_worker_goes_on() {
    let results = RedisServer::start();
    let prio = on_rabbit("addbad", &results).configure(|c| c.task_queue_max_priority = Some(10)).build().unwrap();
    let other = "q.addbad.prio";
    prio.client().send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().queue(other)).unwrap();
    let plain = on_rabbit("addbad", &results).build().unwrap();
    let node = format!("addbad-{}@%h", uuid::Uuid::new_v4().simple());
    let w = plain.worker().concurrency(1).hostname(&node).start().unwrap();
    let node = w.hostname().to_owned();
    let client = plain.client();
    let added = client.control().destination([node.as_str()]).add_consumer(other).unwrap();
    assert!(added[0].value.is_ok(), "{added:?}");
    let deadline = std::time::Instant::now() + T;
    loop {
        let q = client.inspect().destination([node.as_str()]).active_queues().unwrap();
        if !q[0].value.iter().any(|q| q.name == other) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the refused queue is still listed: {q:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(plain.send_task("t.add", (2, 2)).unwrap().get::<i64>(T).unwrap(), 4);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(plain.send_task("t.add", (3, 3)).unwrap().get::<i64>(T).unwrap(), 6);
    assert_eq!(rabbit().ready(other), 1, "the other kind's message was taken");
    w.shutdown();
    rabbit().ctl(&["delete_queue", other]);
}
