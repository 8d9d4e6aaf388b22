//! Interop with real Python Celery 5.7 on a real RabbitMQ (issue 16), results in Redis: each
//! kind of client calling the other kind of worker, a mixed fleet, a Python burst, and acks_late
//! messages of a SIGKILLed worker run by a worker of the other kind. After each drain the queue
//! holds nothing, ready or unacked, by `rabbitmqctl`'s count.

use std::time::{Duration, Instant};

use celeriac::{App, Error, TaskRef};
use serde_json::json;

use crate::interop::{celeriac_worker_on, python_checks_on, python_checks_on_with, python_worker_on, Proc};
use crate::support::*;

const T: Duration = Duration::from_secs(30);
const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.add");

/// The shared node's `celery` queue, emptied for a test that holds [`serial`].
fn fresh_celery_queue() -> String {
    rabbit().ctl(&["purge_queue", "celery"]);
    rabbit().url()
}

fn assert_drained(worker: &Proc) {
    assert_queue_drained("celery", worker)
}

fn assert_queue_drained(queue: &str, worker: &Proc) {
    // RabbitMQ's counts of a quorum queue can trail its consumers' acks: seen here 15–17 s
    // after a Python worker's ack of a countdown task, in two runs of five.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ready, unacked) = rabbit().counts(queue);
        if ready + unacked == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} ready and {unacked} unacked left in celery; log:\n{}",
            worker.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn client_app(broker: &str, results: &RedisServer) -> App {
    App::builder("interop").use_env(false).broker(broker).result_backend(&results.url()).build().unwrap()
}

#[test]
fn python_client_calls_a_celeriac_worker_on_rabbitmq() {
    let _serial = serial();
    let (broker, results) = (fresh_celery_queue(), RedisServer::start());
    let mut worker = celeriac_worker_on(&broker, &results.url(), None, "ra1", &[]);
    python_checks_on(&broker, &results.url(), &worker, "client_checks.py", "all python client checks passed");
    python_checks_on(&broker, &results.url(), &worker, "semantics_checks.py", "all python semantics checks passed");
    python_checks_on(&broker, &results.url(), &worker, "burst.py 2000", "burst of 2000 done");
    worker.stop();
    assert_drained(&worker);
}

/// Celery 5.7's event receiver, `inspect` and `control` against a celeriac worker on RabbitMQ
/// (events on the `celeryev` topic exchange, replies to `reply.celery.pidbox`).
#[test]
fn celery_sees_a_celeriac_workers_events_and_inspects_it_on_rabbitmq() {
    let _serial = serial();
    let (broker, results) = (fresh_celery_queue(), RedisServer::start());
    let mut worker = celeriac_worker_on(&broker, &results.url(), None, "ra9", &["-E"]);
    let log = worker.output();
    let node = log.lines().find_map(|l| l.split_whitespace().find(|w| w.starts_with("ra9@"))).expect("the node name");
    let script = format!("events_checks.py {}", node.trim_end_matches(['.', ':']));
    python_checks_on(&broker, &results.url(), &worker, &script, "all events checks passed");
    worker.stop();
}

#[test]
fn celeriac_client_calls_a_python_worker_on_rabbitmq() {
    let _serial = serial();
    const XSUM: TaskRef<(Vec<i64>,), i64> = TaskRef::new("proj.tasks.xsum");
    let (broker, results) = (fresh_celery_queue(), RedisServer::start());
    let py = python_worker_on(&broker, &results.url(), &[], "pa1");
    let client = client_app(&broker, &results).client();
    assert_eq!(ADD.delay(&client, (4, 4)).unwrap().get(T).unwrap(), 8);
    assert_eq!(XSUM.delay(&client, (vec![1, 2, 3],)).unwrap().get(T).unwrap(), 6);
    let mut kw = serde_json::Map::new();
    kw.insert("y".into(), json!(5));
    assert_eq!(
        client.send_task_with("proj.tasks.add", (1,), kw, &Default::default()).unwrap().get::<i64>(T).unwrap(),
        6
    );
    match client.send_task("proj.tasks.fail", ("boom",)).unwrap().get::<i64>(T) {
        Err(Error::TaskFailed(f)) => {
            assert_eq!(f.exception.exc_type, "ValueError");
            assert!(f.traceback.unwrap().contains("ValueError: boom"));
        }
        other => panic!("expected a ValueError from Python, got {other:?}"),
    }
    let countdown = celeriac::SendOptions::new().countdown(Duration::from_secs(1));
    let started = Instant::now();
    let r = client.send_task_with("proj.tasks.add", (2, 2), serde_json::Map::new(), &countdown).unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 4);
    assert!(started.elapsed() >= Duration::from_millis(900), "countdown ignored");
    let unknown = client.send_task("proj.tasks.nope", (1,)).unwrap();
    assert!(unknown.get::<i64>(Duration::from_secs(2)).is_err());
    py.wait_for("Received unregistered task of type 'proj.tasks.nope'", Duration::from_secs(10));
    assert_drained(&py);
}

#[test]
fn a_mixed_fleet_on_rabbitmq_runs_each_task_exactly_once() {
    let _serial = serial();
    let (broker, results) = (fresh_celery_queue(), RedisServer::start());
    let py = python_worker_on(&broker, &results.url(), &[], "pa2");
    let app = App::builder("proj")
        .use_env(false)
        .broker(&broker)
        .result_backend(&results.url())
        .task("proj.tasks.add", ["x", "y"], |x: i64, y: i64| x + y)
        .build()
        .unwrap();
    let client = app.client();
    let n = 2000;
    // Sent in one pipelined batch: one at a time, a debug build's confirms took long enough for
    // the Python worker to drain everything before ours started.
    let rs = client.send_batch("proj.tasks.add", (0..n).map(|i| (i, 1))).unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get::<i64>(T).unwrap(), i as i64 + 1);
    }
    let ours = w.shutdown().processed;
    std::thread::sleep(Duration::from_millis(300));
    let theirs = py.output().matches("succeeded in").count() as u64;
    assert!(ours > 0 && theirs > 0, "both workers took tasks: celeriac {ours}, python {theirs}");
    assert_eq!(ours + theirs, n as u64, "each task ran exactly once (celeriac {ours} + python {theirs})");
    assert_drained(&py);
}

/// Waits until the queue's consumer holds at least `n` messages unacked.
fn wait_unacked(n: usize, worker: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rabbit().counts("celery").1 < n {
        assert!(Instant::now() < deadline, "the worker never held {n} unacked; log:\n{}", worker.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn acks_late_tasks_of_a_sigkilled_worker_run_on_the_other_kind() {
    let _serial = serial();
    let (broker, results) = (fresh_celery_queue(), RedisServer::start());
    let client = client_app(&broker, &results).client();
    // Python worker killed holding messages: the celeriac worker runs them.
    let sent: Vec<_> = (0..8).map(|_| client.send_task("proj.tasks.sleep", (0.5,)).unwrap()).collect();
    let mut py =
        python_worker_on(&broker, &results.url(), &[("PYPROJ_ACKS_LATE", "1"), ("PYPROJ_PREFETCH", "4")], "pa3");
    wait_unacked(1, &py);
    py.kill(9);
    let mut ours = celeriac_worker_on(&broker, &results.url(), None, "ra3", &[]);
    for r in &sent {
        assert_eq!(r.get::<f64>(T).unwrap(), 0.5);
    }
    ours.stop();
    assert_drained(&ours);
    // And the other way round.
    let cfg = std::env::temp_dir().join(format!("celeriac-amqp-late-{}.toml", free_port()));
    std::fs::write(&cfg, "task_acks_late = true\n").unwrap();
    let sent: Vec<_> = (0..8).map(|_| client.send_task("proj.tasks.sleep", (2,)).unwrap()).collect();
    let mut ours = celeriac_worker_on(&broker, &results.url(), Some(&cfg), "ra4", &[]);
    wait_unacked(2, &ours);
    ours.kill(9);
    let py = python_worker_on(&broker, &results.url(), &[], "pa4");
    for r in &sent {
        assert_eq!(r.get::<f64>(Duration::from_secs(60)).unwrap(), 2.0);
    }
    assert_drained(&py);
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn rpc_results_between_python_and_celeriac_both_ways() {
    let _serial = serial();
    let broker = fresh_celery_queue();
    // A Python client with rpc:// against a celeriac worker replying with rpc://.
    let cfg = std::env::temp_dir().join(format!("celeriac-rpc-{}.toml", free_port()));
    std::fs::write(&cfg, "task_track_started = true\n").unwrap();
    let mut worker = celeriac_worker_on(&broker, "rpc://", Some(&cfg), "ra5", &[]);
    python_checks_on(&broker, "rpc://", &worker, "rpc_checks.py", "all python rpc checks passed");
    worker.stop();
    assert_drained(&worker);
    // A celeriac client with rpc:// against a Python worker.
    let py = python_worker_on(&broker, "rpc://", &[], "pa5");
    let app = App::builder("interop").use_env(false).broker(&broker).result_backend("rpc://").build().unwrap();
    let client = app.client();
    let rs: Vec<_> = (0..50).map(|i| ADD.delay(&client, (i, i)).unwrap()).collect();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get(T).unwrap(), 2 * i as i64);
    }
    match client.send_task("proj.tasks.fail", ("boom",)).unwrap().get::<i64>(T) {
        Err(Error::TaskFailed(f)) => assert_eq!(f.exception.exc_type, "ValueError"),
        other => panic!("expected a ValueError from Python, got {other:?}"),
    }
    // A chain's last step, sent by the Python worker, answers this client's reply queue.
    let flow = ADD.s((1, 1)).unwrap() | celeriac::Signature::new("proj.tasks.add", vec![serde_json::json!(10)]);
    assert_eq!(client.send_signature(&flow).unwrap().get::<i64>(T).unwrap(), 12);
    assert_drained(&py);
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn quorum_queues_with_countdown_both_ways() {
    let _serial = serial();
    let results = RedisServer::start();
    let broker = rabbit().url();
    // A queue of its own: `celery` exists as a classic queue on the shared node.
    let q = "quorum.celery";
    let cfg = std::env::temp_dir().join(format!("celeriac-quorum-{}.toml", free_port()));
    std::fs::write(&cfg, format!("task_default_queue = \"{q}\"\ntask_default_queue_type = \"quorum\"\n")).unwrap();
    let mut ours = celeriac_worker_on(&broker, &results.url(), Some(&cfg), "ra6", &[]);
    let types = rabbit().ctl(&["list_queues", "-q", "--no-table-headers", "name", "type"]);
    assert!(types.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [q, "quorum"]), "{types}");
    let app = App::builder("interop")
        .use_env(false)
        .broker(&broker)
        .result_backend(&results.url())
        .configure(|c| {
            c.task_default_queue = "quorum.celery".into();
            c.task_default_queue_type = "quorum".into();
        })
        .build()
        .unwrap();
    let client = app.client();
    let countdown = celeriac::SendOptions::new().countdown(Duration::from_secs(1));
    let started = Instant::now();
    let rs: Vec<_> = (0..5)
        .map(|i| client.send_task_with("proj.tasks.add", (i, 1), serde_json::Map::new(), &countdown).unwrap())
        .collect();
    let now = ADD.delay(&client, (1, 1)).unwrap();
    assert_eq!(now.get(T).unwrap(), 2);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get::<i64>(T).unwrap(), i as i64 + 1);
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "countdown ignored");
    ours.stop();
    // The same queue served by a Python worker.
    let py = python_worker_on(&broker, &results.url(), &[("PYPROJ_QUEUE_TYPE", "quorum"), ("PYPROJ_QUEUE", q)], "pa6");
    let started = Instant::now();
    let r = client.send_task_with("proj.tasks.add", (4, 4), serde_json::Map::new(), &countdown).unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 8, "{}", py.output());
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_queue_drained(q, &py);
    let _ = std::fs::remove_file(cfg);
}

/// Celery 5.5's native delayed delivery: quorum queues on a topic exchange, countdown tasks
/// parked in the `celery_delayed_*` levels by the broker (the queue and the worker hold nothing
/// meanwhile), from a Python client to a celeriac worker and from a celeriac client to a Python
/// worker.
#[test]
fn native_delayed_delivery_both_ways() {
    let _serial = serial();
    let results = RedisServer::start();
    let broker = rabbit().url();
    let q = "nd.tasks";
    let cfg = std::env::temp_dir().join(format!("celeriac-nd-{}.toml", free_port()));
    std::fs::write(
        &cfg,
        format!(
            "task_default_queue = \"{q}\"\n[[task_queues]]\nname = \"{q}\"\nexchange_type = \"topic\"\nqueue_type = \"quorum\"\n"
        ),
    )
    .unwrap();
    let mut ours = celeriac_worker_on(&broker, &results.url(), Some(&cfg), "ra7", &[]);
    let exchanges = rabbit().ctl(&["list_exchanges", "-q", "--no-table-headers", "name", "type"]);
    for ex in ["celery_delayed_27 topic", "celery_delayed_0 topic", "celery_delayed_delivery topic", "nd.tasks topic"] {
        assert!(
            exchanges.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == ex),
            "{ex}: {exchanges}"
        );
    }
    let py_env = [("PYPROJ_TOPIC_QUEUE", q)];
    python_checks_on_with(
        &broker,
        &results.url(),
        &ours,
        "delayed_checks.py",
        "all python delayed checks passed",
        &py_env,
    );
    ours.stop();
    // Our client to a Python worker.
    let py = python_worker_on(&broker, &results.url(), &py_env, "pa7");
    let app = App::builder("interop")
        .use_env(false)
        .broker(&broker)
        .result_backend(&results.url())
        .config_file(&cfg)
        .build()
        .unwrap();
    let client = app.client();
    let started = Instant::now();
    let countdown = celeriac::SendOptions::new().countdown(Duration::from_secs(3));
    let r = client.send_task_with("proj.tasks.add", (1, 2), serde_json::Map::new(), &countdown).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(rabbit().counts(q), (0, 0), "the delayed task is with the broker's delay levels, not the queue");
    assert_eq!(r.get::<i64>(T).unwrap(), 3, "{}", py.output());
    assert!(started.elapsed() >= Duration::from_millis(2900), "delivered early: {:?}", started.elapsed());
    assert_queue_drained(q, &py);
    let _ = std::fs::remove_file(cfg);
}
