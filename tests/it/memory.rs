//! End-to-end on memory:// (issue 3): shards, stealing, kwargs from Celery-shaped messages,
//! errors, panics, unknown tasks, malformed messages, warm shutdown, a client inside tokio.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use celeriac::protocol::{Headers, Properties, TaskMessage};
use celeriac::{App, Error, SendOptions, ShardState, State, TaskRef};
use serde_json::{json, Map, Value};

use crate::support::*;

const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("t.add");

/// A message shaped exactly as Python Celery 5.7 sends `add.delay(x=4, y=4)` (headers from the
/// PROTOCOL.md capture, body with keyword arguments only).
fn python_shaped(task: &str, id: &str, body: &str) -> TaskMessage {
    let headers: Headers = serde_json::from_value(json!({
        "lang": "py", "task": task, "id": id, "shadow": null, "eta": null, "expires": null, "group": null,
        "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": id, "parent_id": null,
        "argsrepr": "()", "kwargsrepr": "{'x': 4, 'y': 4}", "origin": "gen12925@vm", "ignore_result": false,
        "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}
    }))
    .unwrap();
    let props =
        Properties { correlation_id: Some(id.into()), reply_to: Some("dc0477fe".into()), ..Properties::default() };
    TaskMessage::json(headers, props, Bytes::from(body.to_owned()))
}

#[test]
fn tutorial_tasks_and_typed_handles() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    assert_eq!(ADD.delay(&app.client(), (4, 4)).unwrap().get(T).unwrap(), 8);
    let r = app.send_task("t.add", (2, 3)).unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 5);
    assert_eq!(r.state().unwrap(), State::Success);
    assert!(r.ready().unwrap() && r.successful().unwrap() && !r.failed().unwrap());
    r.forget().unwrap();
    assert_eq!(r.state().unwrap(), State::Pending);
    w.shutdown();
}

#[test]
fn several_shards_all_take_work() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(2).prefetch_multiplier(2).start().unwrap();
    let rs: Vec<_> = (0..40).map(|_| app.send_task("t.sleep", (20,)).unwrap()).collect();
    for r in &rs {
        assert_eq!(r.get::<u64>(T).unwrap(), 20);
    }
    let stats = w.shutdown();
    assert_eq!(stats.processed, 40);
    assert!(stats.per_shard.iter().all(|n| *n > 0), "every shard ran tasks: {stats:?}");
}

#[test]
fn idle_shard_steals_reserved_work_from_a_blocked_one() {
    // Shard prefetch 4: a shard blocked by a long body holds up to 4 reserved fast tasks; the
    // idle shard must take them instead of letting them wait.
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(2).prefetch_multiplier(4).start().unwrap();
    let mut rs = Vec::new();
    for round in 0..6 {
        rs.push(app.send_task("t.hog", (150,)).unwrap());
        for i in 0..8 {
            rs.push(app.send_task("t.add", (round, i)).unwrap());
        }
    }
    for r in &rs {
        r.get::<i64>(T).unwrap();
    }
    let stats = w.shutdown();
    assert_eq!(stats.processed, rs.len() as u64);
    assert!(stats.stolen > 0, "some reserved deliveries were stolen: {stats:?}");
}

#[test]
fn without_stealing_nothing_is_stolen() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(2).stealing(false).start().unwrap();
    let rs: Vec<_> = (0..3).map(|_| app.send_task("t.hog", (50,)).unwrap()).collect();
    for r in &rs {
        r.get::<u64>(T).unwrap();
    }
    assert_eq!(w.shutdown().stolen, 0);
}

#[test]
fn keyword_arguments_from_a_celery_shaped_message() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let client = app.client();
    let id = "7ac8a91d-40f1-4df9-9450-ecb61a3087bf";
    let body = r#"[[], {"x": 4, "y": 4}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
    client.broker().publish(&celeriac::transport::Route::to_queue("celery"), python_shaped("t.add", id, body)).unwrap();
    assert_eq!(client.async_result(id).get::<i64>(T).unwrap(), 8);
    // mixed: one positional, one keyword
    let mut kw = Map::new();
    kw.insert("y".into(), json!(10));
    assert_eq!(app.send_task_with("t.add", (1,), kw, &SendOptions::new()).unwrap().get::<i64>(T).unwrap(), 11);
    w.shutdown();
}

#[test]
fn errors_wrong_types_and_panics_become_failures_and_the_shard_goes_on() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();

    let f = failure(app.send_task("t.fail", ("nope",)).unwrap().get::<Value>(T).unwrap_err());
    assert_eq!((f.exception.exc_type.as_str(), f.exception.exc_module.as_str()), ("ValueError", "builtins"));
    assert_eq!(f.exception.message(), "nope");
    assert!(f.traceback.as_deref().unwrap().contains("ValueError: nope"));
    assert_eq!(f.state, State::Failure);

    // The tutorial's add.delay(2, '2'): TypeError, as Python users expect.
    let f = failure(app.send_task("t.add", (2, "2")).unwrap().get::<i64>(T).unwrap_err());
    assert_eq!(f.exception.exc_type, "TypeError");
    assert!(f.exception.message().contains("'y'"), "{}", f.exception.message());

    let f = failure(app.send_task("t.add", (1, 2, 3)).unwrap().get::<i64>(T).unwrap_err());
    assert_eq!(f.exception.message(), "t.add() takes 2 positional arguments but 3 were given");
    let f = failure(app.send_task("t.add", (1,)).unwrap().get::<i64>(T).unwrap_err());
    assert_eq!(f.exception.message(), "t.add() missing 1 required positional argument: 'y'");
    let mut kw = Map::new();
    kw.insert("z".into(), json!(1));
    let f = failure(app.send_task_with("t.add", (1, 2), kw, &SendOptions::new()).unwrap().get::<i64>(T).unwrap_err());
    assert_eq!(f.exception.message(), "t.add() got an unexpected keyword argument 'z'");

    let f = failure(app.send_task("t.boom", ()).unwrap().get::<i64>(T).unwrap_err());
    assert_eq!(f.exception.exc_type, "TaskPanicked");
    assert!(f.exception.message().contains("kaboom"));
    // the shard survived the panic
    assert_eq!(ADD.delay(&app.client(), (1, 1)).unwrap().get(T).unwrap(), 2);
    // propagate=False returns the exception dict as the value
    let v = app.send_task("t.fail", ("x",)).unwrap().get_value(T, false).unwrap();
    assert_eq!(v["exc_type"], "ValueError");
    w.shutdown();
}

#[test]
fn unregistered_task_fails_fast_with_not_registered() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let started = Instant::now();
    let f = failure(app.send_task("t.nope", (1,)).unwrap().get::<Value>(T).unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (f.exception.exc_type.as_str(), f.exception.exc_module.as_str()),
        ("NotRegistered", "celery.exceptions")
    );
    assert_eq!(f.exception.exc_message, json!(["t.nope"]));
    assert_eq!(w.shutdown().rejected, 1);
}

#[test]
fn malformed_messages_are_rejected_and_the_worker_goes_on() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let client = app.client();
    // a body that is not JSON
    client
        .broker()
        .publish(&celeriac::transport::Route::to_queue("celery"), python_shaped("t.add", "bad-1", "[[1, 2], {"))
        .unwrap();
    // a content type the worker does not accept
    let mut pickled = python_shaped("t.add", "bad-2", "[[1, 2], {}, null]");
    pickled.content_type = "application/x-python-serialize".into();
    client.broker().publish(&celeriac::transport::Route::to_queue("celery"), pickled).unwrap();
    // neither headers nor a v1 body
    let mut nameless = python_shaped("", "", "[[1, 2], {}, null]");
    nameless.headers.root_id = None;
    client.broker().publish(&celeriac::transport::Route::to_queue("celery"), nameless).unwrap();

    let f = failure(client.async_result("bad-1").get::<Value>(T).unwrap_err());
    assert_eq!(f.exception.exc_type, "DecodeError");
    let f = failure(client.async_result("bad-2").get::<Value>(T).unwrap_err());
    assert_eq!(f.exception.exc_type, "ContentDisallowed");
    assert_eq!(ADD.delay(&client, (20, 22)).unwrap().get(T).unwrap(), 42);
    assert_eq!(w.shutdown().rejected, 3);
    assert_eq!(client.broker().queue_len("celery").unwrap(), 0);
}

#[test]
fn warm_shutdown_returns_reserved_messages_and_loses_nothing() {
    let app = base("t").build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).prefetch_multiplier(3).start().unwrap();
    let n = 30;
    let rs: Vec<_> = (0..n).map(|_| app.send_task("t.sleep", (200,)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    w.shutdown();
    let done = rs.iter().filter(|r| r.ready().unwrap()).count();
    let waiting = client.broker().queue_len("celery").unwrap();
    assert!(done > 0, "the running tasks finished");
    assert_eq!(done + waiting, n, "every message is either done or back in the queue");
    // a new worker runs the rest; each task ran exactly once
    let w2 = app.worker().concurrency(2).start().unwrap();
    for r in &rs {
        assert_eq!(r.get::<u64>(T).unwrap(), 200);
    }
    assert_eq!(w2.shutdown().processed as usize, waiting);
}

#[test]
fn client_inside_a_tokio_runtime() {
    let app = base("t").build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let client = app.client();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let total: i64 = rt.block_on(async move {
        let mut handles = Vec::new();
        for i in 0..50 {
            let c = client.clone();
            handles.push(tokio::spawn(async move { ADD.delay(&c, (i, i)).unwrap().get_async(T).await.unwrap() }));
        }
        let mut total = 0;
        for h in handles {
            total += h.await.unwrap();
        }
        // a timeout from inside tokio is an error, not a hang
        let r = client.send_task("t.sleep", (1000,)).unwrap();
        let err = r.get_async::<u64>(Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        total
    });
    assert_eq!(total, (0..50).map(|i| 2 * i).sum::<i64>());
    w.shutdown();
}

#[test]
fn extractors_context_shard_state_and_subtasks() {
    use std::cell::Cell;
    fn count(n: ShardState<Cell<u64>>) -> u64 {
        n.set(n.get() + 1);
        n.get()
    }
    fn spawn_child(ctx: celeriac::TaskCtx, client: celeriac::Client, x: i64) -> Result<String, celeriac::TaskError> {
        let opts = SendOptions::new().parent(ctx.id(), ctx.root_id().unwrap_or(ctx.id()));
        Ok(client
            .send_task_with("t.add", (x, x), Map::new(), &opts)
            .map_err(|e| celeriac::TaskError::new("RuntimeError", e.to_string()))?
            .id()
            .to_owned())
    }
    let app = base("t")
        .shard_state(|_shard| Cell::new(0u64))
        .task("t.count", [], count)
        .task("t.spawn", ["x"], spawn_child)
        .build()
        .unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let r = app.send_task("t.whoami", ("hello",)).unwrap();
    let (id, name, shard, tag): (String, String, usize, String) = r.get(T).unwrap();
    assert_eq!((id.as_str(), name.as_str(), shard, tag.as_str()), (r.id(), "t.whoami", 0, "hello"));
    let counts: HashSet<u64> = (0..5).map(|_| app.send_task("t.count", ()).unwrap().get::<u64>(T).unwrap()).collect();
    assert_eq!(counts, (1..=5).collect());
    let child: String = app.send_task("t.spawn", (21,)).unwrap().get(T).unwrap();
    assert_eq!(app.client().async_result(child).get::<i64>(T).unwrap(), 42);
    w.shutdown();
}

#[test]
fn countdown_routes_priorities_and_ignore_result() {
    let app = base("t")
        .configure(|c| {
            c.task_routes = vec![celeriac::config::TaskRoute {
                exchange: None,
                pattern: "t.sl*".into(),
                queue: "slow".into(),
                routing_key: None,
                priority: None,
            }]
        })
        .build()
        .unwrap();
    let client = app.client();
    // routed to "slow", which no worker consumes yet
    let routed = app.send_task("t.sleep", (1,)).unwrap();
    assert_eq!(client.broker().queue_len("slow").unwrap(), 1);
    let w = app.worker().concurrency(1).queues(["celery", "slow"]).start().unwrap();
    assert_eq!(routed.get::<u64>(T).unwrap(), 1);

    let sent = Instant::now();
    let r = client
        .send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().countdown(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 2);
    assert!(sent.elapsed() >= Duration::from_millis(300), "ETA honoured");

    let ignored = client.send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().ignore_result(true)).unwrap();
    assert_eq!(ADD.delay(&client, (0, 0)).unwrap().get(T).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ignored.state().unwrap(), State::Pending, "ignore_result stores nothing");

    let expired = client
        .send_task_with(
            "t.add",
            (1, 1),
            Map::new(),
            &SendOptions::new().countdown(Duration::from_millis(200)).expires_in(Duration::from_millis(50)),
        )
        .unwrap();
    let f = failure(expired.get::<i64>(T).unwrap_err());
    assert_eq!((f.state, f.exception.exc_type.as_str()), (State::Revoked, "TaskRevokedError"));
    w.shutdown();
}

#[test]
fn protocol_v1_and_msgpack_messages_run() {
    let app = base("t").configure(|c| c.accept_content = vec!["json".into(), "msgpack".into()]).build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(1).start().unwrap();
    let v1 = r#"{"task": "t.add", "id": "v1-id", "args": [2, 3], "kwargs": {}, "retries": 0, "eta": null, "expires": null,
        "utc": true, "callbacks": null, "errbacks": null, "timelimit": [null, null], "taskset": null, "chord": null}"#;
    let mut m = TaskMessage::json(Headers::new("", ""), Properties::default(), Bytes::from(v1));
    m.headers.root_id = None;
    client.broker().publish(&celeriac::transport::Route::to_queue("celery"), m).unwrap();
    assert_eq!(client.async_result("v1-id").get::<i64>(T).unwrap(), 5);

    let mp = TaskMessage::encode(
        Headers::new("t.add", "mp-id"),
        Properties::default(),
        celeriac::protocol::ContentType::MsgPack,
        Some(celeriac::protocol::Compression::Zlib),
        &[json!(20), json!(22)],
        &Map::new(),
        &Default::default(),
    )
    .unwrap();
    client.broker().publish(&celeriac::transport::Route::to_queue("celery"), mp).unwrap();
    assert_eq!(client.async_result("mp-id").get::<i64>(T).unwrap(), 42);
    w.shutdown();
}

#[test]
fn bad_configuration_fails_at_build_with_a_clear_message() {
    let err = App::builder("t").use_env(false).broker("amqp//oops").build().err().unwrap().to_string();
    assert!(err.contains("broker_url") && err.contains("amqp//oops"), "{err}");
    fn one(x: i64) -> i64 {
        x
    }
    let err = App::builder("t").use_env(false).task("t.one", ["x", "y"], one).build().err().unwrap().to_string();
    assert!(err.contains("t.one") && err.contains("1 positional"), "{err}");
    let err = App::builder("t")
        .use_env(false)
        .task("t.one", ["x"], one)
        .task("t.one", ["x"], one)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("registered twice"), "{err}");
    let dir = std::env::temp_dir().join(format!("celeriac-cfg-{}.toml", std::process::id()));
    std::fs::write(
        &dir,
        "broker_url = \"memory://\"\nresult_backend = \"memory://\"\nworker_prefetch_multiplier = 7\n",
    )
    .unwrap();
    let app = App::builder("t").use_env(false).config_file(&dir).build().unwrap();
    assert_eq!(app.config().worker_prefetch_multiplier, 7);
    std::fs::remove_file(&dir).unwrap();
    let no_backend = App::builder("t").use_env(false).task("t.one", ["x"], one).build().unwrap();
    let err = no_backend.send_task("t.one", (1,)).unwrap().get::<i64>(T).unwrap_err().to_string();
    assert!(err.contains("result_backend"), "{err}");
}

#[test]
fn blocking_tasks_run_off_the_shard_and_do_not_stall_it() {
    fn crunch(ms: u64) -> String {
        std::thread::sleep(Duration::from_millis(ms));
        std::thread::current().name().unwrap_or("").to_owned()
    }
    fn shard_thread() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }
    let app = base("t")
        .task("t.crunch", ["ms"], celeriac::blocking(crunch))
        .task("t.where", [], shard_thread)
        .build()
        .unwrap();
    let w = app.worker().concurrency(2).shards(1).start().unwrap();
    let slow = app.send_task("t.crunch", (400,)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // while the blocking body sleeps, the same shard keeps serving quick tasks
    let started = Instant::now();
    let here: String = app.send_task("t.where", ()).unwrap().get(T).unwrap();
    assert!(started.elapsed() < Duration::from_millis(300), "the shard was not stalled");
    assert!(here.starts_with("celeriac-shard-0"), "{here}");
    let pool: String = slow.get(T).unwrap();
    assert!(!pool.starts_with("celeriac-shard"), "the blocking body ran on {pool:?}");
    w.shutdown();
}

/// Regression: the shard loops read the wake epoch after checking the lifecycle, so a shutdown
/// landing in between was never seen and `shutdown()` hung (seen once in a clean-clone
/// quickstart run). Start and stop many workers; every stop must finish promptly.
#[test]
fn shutdown_never_loses_its_wake_up() {
    let app = base("t").build().unwrap();
    for round in 0..40 {
        let w = app.worker().concurrency(2).start().unwrap();
        let rs: Vec<_> = (0..20).map(|i| ADD.delay(&app.client(), (round, i)).unwrap()).collect();
        for r in &rs {
            r.get(T).unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(w.shutdown()).unwrap());
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok(), "shutdown hung in round {round}");
    }
}

/// Issue 17's first part on the in-process broker: a chain of three (one step immutable), a
/// link callback with the result, an errback with the failed task's id, and the stored
/// `children` and `parent_id`s that Python reads.
#[test]
fn chains_links_and_errbacks() {
    use celeriac::protocol::Signature;
    let app = base("canvas").build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    let with_id = |mut s: Signature, id: &str| {
        s.options.insert("task_id".into(), serde_json::json!(id));
        s
    };
    let (second, third) = ("canvas-2".to_owned(), "canvas-3".to_owned());
    let mut last = Signature::new("t.add", vec![serde_json::json!(100), serde_json::json!(100)]);
    last.immutable = true;
    let mut opts = SendOptions::new();
    opts.embed.chain =
        Some(vec![with_id(last, &third), with_id(Signature::new("t.add", vec![serde_json::json!(10)]), &second)]);
    let first = client.send_task_with("t.add", (1, 2), Map::new(), &opts).unwrap();
    assert_eq!(first.get::<i64>(T).unwrap(), 3);
    let third_r = client.async_result(third.clone());
    assert_eq!(third_r.get::<i64>(T).unwrap(), 200);
    let backend = client.backend();
    let meta = |id: &str| backend.get(id).unwrap().unwrap();
    assert_eq!(meta(&second).result, serde_json::json!(13));
    assert_eq!(meta(&second).parent_id.as_deref(), Some(first.id()));
    assert_eq!(meta(&third).parent_id.as_deref(), Some(second.as_str()));
    let children = meta(first.id()).children.unwrap();
    assert_eq!(children, vec![serde_json::json!([[second, null], null])]);
    // link: the result prepended; link_error: the failed task's id.
    let cb = with_id(Signature::new("t.add", vec![serde_json::json!(1)]), "canvas-cb");
    let r = client.send_task_with("t.add", (20, 21), Map::new(), &SendOptions::new().link(cb)).unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 41);
    assert_eq!(client.async_result("canvas-cb").get::<i64>(T).unwrap(), 42);
    let eb = with_id(Signature::new("t.whoami", vec![]), "canvas-eb");
    let failed = client.send_task_with("t.fail", ("x",), Map::new(), &SendOptions::new().link_error(eb)).unwrap();
    assert!(failed.get::<()>(T).is_err());
    let seen: serde_json::Value = client.async_result("canvas-eb").get(T).unwrap();
    assert_eq!(seen[3], serde_json::json!(failed.id()), "the errback gets the failed task's id: {seen}");
    w.shutdown();
}

/// A group as a chain's next step: each member runs with the result prepended, in the group.
#[test]
fn a_chain_into_a_group() {
    use celeriac::protocol::Signature;
    let app = base("canvas-group").build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    let member = |arg: i64, id: &str| {
        let mut s = Signature::new("t.add", vec![json!(arg)]);
        s.options.insert("task_id".into(), json!(id));
        s
    };
    let group: Signature = serde_json::from_value(json!({
        "task": "celery.group", "args": [], "kwargs": {"tasks": [member(10, "g-1"), member(20, "g-2")]},
        "options": {"task_id": "g"}, "subtask_type": "group", "immutable": false}))
    .unwrap();
    let mut opts = SendOptions::new();
    opts.embed.chain = Some(vec![group]);
    let first = client.send_task_with("t.add", (1, 1), Map::new(), &opts).unwrap();
    assert_eq!(first.get::<i64>(T).unwrap(), 2);
    assert_eq!(client.async_result("g-1").get::<i64>(T).unwrap(), 12);
    assert_eq!(client.async_result("g-2").get::<i64>(T).unwrap(), 22);
    let meta = client.backend().get("g-2").unwrap().unwrap();
    assert_eq!((meta.group_id.as_deref(), meta.parent_id.as_deref()), (Some("g"), Some(first.id())));
    w.shutdown();
}
