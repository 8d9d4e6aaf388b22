//! Tests named after bugs (ripgrep-style): each pins one defect that was found, so it stays fixed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use celeriac::TaskCtx;

use crate::support::*;

/// How many times each task id ran, process-wide (the body records itself).
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
static SPINS: AtomicU64 = AtomicU64::new(0);

/// `add` that records its run and, every 500th call, holds its shard for 2 ms (a sync body not
/// declared blocking): the other shard then finds that shard's reserved queue full and steals.
fn counted_add(ctx: TaskCtx, x: i64, y: i64) -> i64 {
    *RUNS.lock().unwrap().get_or_insert_with(HashMap::new).entry(ctx.id().to_owned()).or_insert(0) += 1;
    if x % 500 == 0 {
        SPINS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    }
    x + y
}

/// Issue 14, P0: with stealing on, the ack of a stolen delivery went out on the thief shard's
/// connection and could reach Redis before the stash (`HSET unacked` / `ZADD unacked_index`) that
/// the popping shard had sent on its own: 10,187 of 200,000 entries stayed in `unacked`, each a
/// second run after kombu's visibility restore. A drain of 100,000 tasks with real stealing must
/// leave `unacked` and `unacked_index` empty, and every task must have run exactly once with its
/// result stored.
#[test]
fn stolen_acks_never_overtake_their_stash() {
    let _one = serial();
    let server = RedisServer::start();
    let url = server.url();
    let app = on_redis("t", &server)
        .task("t.counted_add", ["x", "y"], counted_add)
        .configure(|c| c.worker_prefetch_multiplier = 16)
        .build()
        .unwrap();
    let client = app.client();
    const N: i64 = 100_000;
    let mut results = Vec::with_capacity(N as usize);
    for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
        results.extend(client.send_batch("t.counted_add", chunk.iter().map(|i| (*i, 1))).unwrap());
    }
    let w = app.worker().concurrency(2).start().unwrap();
    let until = Instant::now() + Duration::from_secs(300);
    while w.stats().processed < N as u64 {
        assert!(Instant::now() < until, "drain stalled at {:?}", w.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = w.shutdown();
    assert_eq!(stats.processed, N as u64, "{stats:?}");
    assert!(stats.stolen > 0, "the load must make the shards steal: {stats:?}");
    assert!(SPINS.load(Ordering::Relaxed) > 0);
    assert_eq!(frame_int(&redis_cmd(&url, &["HLEN", "unacked"])), 0, "entries left in unacked ({stats:?})");
    assert_eq!(frame_int(&redis_cmd(&url, &["ZCARD", "unacked_index"])), 0, "entries left in unacked_index");
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "celery"])), 0);
    let runs = RUNS.lock().unwrap().take().unwrap_or_default();
    assert_eq!(runs.len(), N as usize, "every task ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(twice.is_empty(), "tasks that ran more than once: {twice:?}");
    // Every result is stored: a sample read through the client, all of them counted by key.
    for (i, r) in results.iter().enumerate().step_by(97) {
        assert_eq!(r.get::<i64>(T).unwrap(), i as i64 + 1);
    }
    let keys = frame_list(&redis_cmd(&url, &["KEYS", "celery-task-meta-*"]));
    assert_eq!(keys.len(), N as usize, "results missing");
}

/// Issue 14: a worker whose result backend refused its password printed `ready.`, ran tasks,
/// lost every result and hung its warm shutdown. Now the start fails and says why.
#[test]
fn a_result_backend_with_a_wrong_password_fails_the_start() {
    let server = RedisServer::start();
    redis_cmd(&server.url(), &["CONFIG", "SET", "requirepass", "s3cret"]);
    let good = format!("redis://:s3cret@127.0.0.1:{}/0", server.port);
    let wrong = format!("redis://:nope@127.0.0.1:{}/0", server.port);
    let app = base("t").broker(&good).result_backend(&wrong).build().unwrap();
    let started = Instant::now();
    let err = app.worker().concurrency(1).start().err().expect("a worker must not start without its result store");
    let text = err.to_string();
    assert!(text.contains("result backend") && text.contains("WRONGPASS"), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("nope"), "passwords are hidden: {text}");
    assert!(started.elapsed() < Duration::from_secs(5), "a refused password is not retried");
    // The broker is checked the same way.
    let app = base("t").broker(&wrong).result_backend(&good).build().unwrap();
    let text = app.worker().concurrency(1).start().err().unwrap().to_string();
    assert!(text.contains("broker") && text.contains("WRONGPASS"), "{text}");
}

/// An app whose broker and result backend are two servers, so one can misbehave alone.
fn split(broker: &RedisServer, results: &RedisServer) -> celeriac::AppBuilder {
    base("t").broker(&broker.url()).result_backend(&results.url())
}

/// Issue 14: a result write answered `BUSY` (a script running) or `LOADING` (after a restart)
/// was dropped; redis-py retries both, and so does the store now.
#[test]
fn results_written_while_redis_is_busy_or_loading_are_retried() {
    let _one = serial();
    let (broker, mut results) = (RedisServer::start(), RedisServer::start());
    let app = split(&broker, &results).build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(app.send_task("t.add", (1, 1)).unwrap().get::<i64>(T).unwrap(), 2);

    // BUSY: a script that runs for 1.5 s, past a 50 ms busy threshold.
    redis_cmd(&results.url(), &["CONFIG", "SET", "busy-reply-threshold", "50"]);
    let port = results.port;
    let script = "local t0 = redis.call('TIME')[1] while tonumber(redis.call('TIME')[1]) - t0 < 2 do end return 1";
    let busy = std::thread::spawn(move || raw_redis(port, &["EVAL", script, "0"]));
    let until = Instant::now() + Duration::from_secs(5);
    while !raw_redis(port, &["PING"]).starts_with("-BUSY") {
        assert!(Instant::now() < until, "the script never made the server busy");
    }
    let r = app.send_task("t.add", (2, 2)).unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 4, "the result written during BUSY arrives");
    busy.join().unwrap();

    // LOADING: a data set that takes a while to load from the append-only file, then a restart
    // while tasks finish.
    let fill = "for i = 1, 1500000 do redis.call('SET', 'filler:' .. i, 'x') end return 1";
    assert_eq!(raw_redis(port, &["EVAL", fill, "0"]), ":1");
    results.stop();
    let rs: Vec<_> = (0..20).map(|i| app.send_task("t.add", (i, i)).unwrap()).collect();
    results.restart(Duration::ZERO);
    let mut saw_loading = false;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let reply = raw_redis(port, &["PING"]);
            if reply.starts_with("-LOADING") {
                saw_loading = true;
            } else if reply == "+PONG" {
                break;
            }
        }
        assert!(Instant::now() < until, "redis never finished loading");
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get::<i64>(Duration::from_secs(70)).unwrap(), 2 * i as i64);
    }
    let stats = w.shutdown();
    assert_eq!(stats.store_failed, 0, "{stats:?}");
    assert!(saw_loading, "the restart was too quick to show LOADING: the test proved nothing");
}

/// Issue 14: a result write the store refuses for good (`OOM`) must not pass for success: the
/// acks_late message stays unacked for redelivery, the failure is counted, and the warm shutdown
/// does not wait for the store.
#[test]
fn a_refused_result_write_leaves_the_message_unacked() {
    let (broker, results) = (RedisServer::start(), RedisServer::start());
    let app = split(&broker, &results).configure(|c| c.task_acks_late = true).build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    redis_cmd(&results.url(), &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_cmd(&results.url(), &["CONFIG", "SET", "maxmemory", "1"]);
    let r = app.send_task("t.add", (3, 4)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while w.stats().store_failed == 0 {
        assert!(Instant::now() < until, "the refused write was not reported: {:?}", w.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let stats = w.shutdown();
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown waited on the store");
    assert_eq!((stats.processed, stats.store_failed), (1, 1), "{stats:?}");
    assert_eq!(frame_int(&redis_cmd(&broker.url(), &["HLEN", "unacked"])), 1, "left for redelivery");
    // Once the store takes writes again, a worker that restores the message stores the result.
    redis_cmd(&results.url(), &["CONFIG", "SET", "maxmemory", "0"]);
    let app = split(&broker, &results)
        .configure(|c| {
            c.task_acks_late = true;
            c.broker_transport_options.insert("visibility_timeout".into(), 1.into());
        })
        .build()
        .unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 7);
    w.shutdown();
    assert_eq!(frame_int(&redis_cmd(&broker.url(), &["HLEN", "unacked"])), 0);
}

/// Publishes `t.add(1, 1)` with no worker running and returns its envelope as kombu wrote it,
/// taken back off the queue, and the result handle.
fn envelope_of_add(app: &celeriac::App, url: &str) -> (serde_json::Value, celeriac::AsyncResult) {
    let r = app.send_task("t.add", (1, 1)).unwrap();
    let raw = frame_str(&redis_cmd(url, &["RPOP", "celery"])).unwrap();
    (serde_json::from_str(&raw).unwrap(), r)
}

/// Issue 14: a header of the wrong type (`retries: "x"`, `timelimit: [-1, "z"]`, a task name
/// that is not a string) dropped the message with no result, so a waiting client hung; an `eta`
/// that is not a date ran the task at once. Each now fails by id with a FAILURE the client sees,
/// and the worker keeps going.
#[test]
fn malformed_headers_fail_the_task_by_id_and_the_worker_keeps_going() {
    let server = RedisServer::start();
    let url = server.url();
    let app = on_redis("t", &server).build().unwrap();
    let cases: [(&str, serde_json::Value); 5] = [
        ("retries", serde_json::json!("x")),
        ("timelimit", serde_json::json!([-1, "z"])),
        ("task", serde_json::json!(5)),
        ("eta", serde_json::json!("not a date")),
        ("expires", serde_json::json!("soon")),
    ];
    let mut waiting = Vec::new();
    for (header, value) in &cases {
        let (mut env, r) = envelope_of_add(&app, &url);
        env["headers"][*header] = value.clone();
        waiting.push((header, r, env.to_string()));
    }
    for (_, _, env) in &waiting {
        redis_cmd(&url, &["LPUSH", "celery", env]);
    }
    let w = app.worker().concurrency(1).start().unwrap();
    for (header, r, _) in &waiting {
        let e = failure(r.get::<i64>(T).unwrap_err());
        assert_eq!(e.exception.exc_type, "DecodeError", "{header}: {e:?}");
        assert!(e.exception.message().contains(*header) || e.exception.message().contains("ETA"), "{header}: {e:?}");
    }
    // Still consuming, nothing left behind.
    assert_eq!(app.send_task("t.add", (2, 2)).unwrap().get::<i64>(T).unwrap(), 4);
    let stats = w.shutdown();
    assert_eq!(stats.rejected, cases.len() as u64, "{stats:?}");
    assert_eq!(stats.processed, 1, "no malformed message ran: {stats:?}");
    assert_eq!(frame_int(&redis_cmd(&url, &["HLEN", "unacked"])), 0);
}

/// Issue 14: a 50 MB string passed to a task expecting numbers stored a 200 MB FAILURE (the
/// error quoted the argument, the traceback quoted the error); Python stores under a KB.
#[test]
fn a_huge_wrong_argument_makes_a_small_failure() {
    let server = RedisServer::start();
    let url = server.url();
    let app = on_redis("t", &server).task("t.xsum", ["numbers"], |n: Vec<i64>| n.iter().sum::<i64>()).build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let big = "7".repeat(50 * 1024 * 1024);
    let r = app.send_task("t.xsum", (big,)).unwrap();
    let e = failure(r.get::<i64>(Duration::from_secs(60)).unwrap_err());
    assert_eq!(e.exception.exc_type, "TypeError");
    assert!(e.exception.message().len() <= celeriac::protocol::EXC_MESSAGE_MAX, "{}", e.exception.message().len());
    let stored = frame_str(&redis_cmd(&url, &["GET", &format!("celery-task-meta-{}", r.id())])).unwrap();
    assert!(stored.len() < 16 * 1024, "stored FAILURE of {} bytes", stored.len());
    w.shutdown();
}

/// Issue 14: a 1 MB zlib body inflating to 1 GiB took the worker to 1.1 GB. A body that inflates
/// past `worker_max_body_size` is refused (FAILURE by id) without being inflated.
#[test]
fn a_compression_bomb_is_refused_before_it_inflates() {
    let server = RedisServer::start();
    let url = server.url();
    let app = on_redis("t", &server).configure(|c| c.worker_max_body_size = 1024 * 1024).build().unwrap();
    let (mut env, r) = envelope_of_add(&app, &url);
    // [[<8 MiB of zeros as a JSON string>], {}, {}]: valid once inflated, and far past 1 MiB.
    let body = format!("[[\"{}\"], {{}}, {{}}]", "0".repeat(8 * 1024 * 1024));
    let zipped = celeriac::protocol::Compression::Zlib.compress(body.as_bytes()).unwrap();
    use base64::Engine as _;
    env["body"] = serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&zipped));
    env["headers"]["compression"] = serde_json::json!("application/x-gzip");
    redis_cmd(&url, &["LPUSH", "celery", &env.to_string()]);
    let w = app.worker().concurrency(1).start().unwrap();
    let e = failure(r.get::<i64>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "DecodeError");
    assert!(e.exception.message().contains("limit"), "{e:?}");
    assert_eq!(app.send_task("t.add", (2, 2)).unwrap().get::<i64>(T).unwrap(), 4, "the worker keeps going");
    w.shutdown();
}

/// `check` printed the broker password in clear, `-l bogus` turned all logging off without a
/// word, and `-c 0` was taken: the password is hidden, the bad flags are errors that say why.
#[test]
fn check_hides_passwords_and_bad_worker_flags_are_refused() {
    let proj = |args: &[&str]| {
        let out = std::process::Command::new(crate::interop::proj_bin())
            .args(args)
            .env("CELERY_BROKER_URL", "redis://:sekret@127.0.0.1:1/0")
            .env_remove("CELERY_RESULT_BACKEND")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = proj(&["check"]);
    assert!(ok && text.contains("broker_url = \"redis://:**@127.0.0.1:1/0\"") && !text.contains("sekret"), "{text}");
    let (ok, text) = proj(&["worker", "-l", "bogus"]);
    assert!(!ok && text.contains("\"bogus\" is not a log level"), "{text}");
    let (ok, text) = proj(&["worker", "-c", "0"]);
    assert!(!ok && text.contains("--concurrency") && text.contains("at least 1"), "{text}");
}
