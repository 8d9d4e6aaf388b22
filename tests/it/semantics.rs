//! Task execution semantics (issue 5), one suite stamped over every transport: retries, ETA,
//! expiry, time and rate limits, acks, Reject/Ignore, STARTED, update_state, revocation and
//! signal hooks, each checked on the memory broker, a real redis-server and a real rabbitmq-server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use celeriac::{
    blocking, AppBuilder, AsyncResult, Ignore, Reject, Retry, SendOptions, Signal, State, TaskCtx, TaskError,
    TaskOptions,
};
use serde_json::{json, Map, Value};

use crate::support::*;

/// Where a test runs: the embedded memory broker, a redis-server of its own, or the shared
/// rabbitmq-server (a queue of its own, results in a redis-server of its own).
pub(crate) enum Env {
    Memory,
    Redis(RedisServer),
    Amqp(RedisServer, String),
}

impl Env {
    pub(crate) fn memory() -> Env {
        Env::Memory
    }

    pub(crate) fn redis() -> Env {
        Env::Redis(RedisServer::start())
    }

    pub(crate) fn amqp() -> Env {
        Env::Amqp(RedisServer::start(), format!("s.{}", uuid::Uuid::new_v4().simple()))
    }

    /// The queue the tasks go to.
    pub(crate) fn queue(&self) -> &str {
        match self {
            Env::Amqp(_, q) => q,
            _ => "celery",
        }
    }

    /// The base test tasks (`support::base`) named `name` on this transport.
    pub(crate) fn base(&self, name: &str) -> AppBuilder {
        match self {
            Env::Memory => base(name),
            Env::Redis(server) => on_redis(name, server),
            Env::Amqp(results, queue) => {
                let q = queue.clone();
                on_rabbit(name, results).configure(move |c| c.task_default_queue = q)
            }
        }
    }

    /// The semantics test tasks on this transport.
    fn app(&self) -> AppBuilder {
        self.base("s")
            .task("s.flaky", ["fail_times"], flaky)
            .task_with(
                "s.auto",
                [],
                TaskOptions {
                    autoretry_for: vec!["ValueError".into()],
                    default_retry_delay: Some(0.05),
                    max_retries: Some(Some(2)),
                    ..TaskOptions::default()
                },
                |ctx: TaskCtx| -> Result<(), TaskError> {
                    Err(TaskError::value_error(format!("attempt {}", ctx.retries())))
                },
            )
            .task("s.soft", [], soft)
            .task("s.soft_ignored", ["ms"], soft_ignored)
            .task_with(
                "s.soft_option",
                ["ms"],
                TaskOptions { watches_soft_time_limit: true, ..TaskOptions::default() },
                sleep_ms,
            )
            .task("s.block", ["ms"], blocking(|ms: u64| std::thread::sleep(Duration::from_millis(ms))))
            .task("s.progress", ["steps"], progress)
            .task("s.reject", [], |ctx: TaskCtx| -> Result<&'static str, TaskError> {
                if ctx.delivery_info().redelivered {
                    Ok("second delivery")
                } else {
                    Err(Reject::new("not yet", true).into())
                }
            })
            .task("s.drop", [], || -> Result<(), TaskError> { Err(Reject::new("never", false).into()) })
            .task("s.ignore", [], || -> Result<(), TaskError> { Err(Ignore.into()) })
            .task_with(
                "s.limited",
                [],
                TaskOptions { rate_limit: Some("20/s".into()), ..TaskOptions::default() },
                || Instant::now().elapsed().as_nanos() as u64,
            )
            .task("s.slow_first", ["ms"], |ctx: TaskCtx, ms: u64| async move {
                if !ctx.delivery_info().redelivered {
                    celeriac::rt::sleep(Duration::from_millis(ms)).await;
                }
                ctx.delivery_info().redelivered
            })
    }
}

fn flaky(ctx: TaskCtx, fail_times: u32) -> Result<u32, TaskError> {
    if ctx.retries() < fail_times {
        return Err(Retry::new().countdown(0.05).exc(TaskError::value_error("flaky")).into());
    }
    Ok(ctx.retries())
}

/// Says it watches its soft limit, then runs past it.
async fn soft_ignored(ctx: TaskCtx, ms: u64) -> String {
    assert!(!ctx.soft_time_limit_exceeded());
    celeriac::rt::sleep(Duration::from_millis(ms)).await;
    assert!(ctx.soft_time_limit_exceeded());
    "finished".to_owned()
}

/// Works until its soft limit, then stops cleanly with SoftTimeLimitExceeded.
async fn soft(ctx: TaskCtx) -> Result<(), TaskError> {
    assert!(!ctx.soft_time_limit_exceeded());
    ctx.soft_time_limit().await;
    assert!(ctx.soft_time_limit_exceeded());
    Err(TaskError::soft_time_limit_exceeded())
}

async fn progress(ctx: TaskCtx, steps: u32) -> u32 {
    for i in 1..=steps {
        ctx.update_state("PROGRESS", json!({"current": i, "total": steps}));
        celeriac::rt::sleep(Duration::from_millis(100)).await;
    }
    steps
}

/// Polls `r` until `pred` holds on its stored meta.
fn wait_for(r: &AsyncResult, what: &str, pred: impl Fn(&State, &Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let state = r.state().unwrap();
        let info = r.info().unwrap().unwrap_or(Value::Null);
        if pred(&state, &info) {
            return info;
        }
        assert!(Instant::now() < deadline, "never saw {what}; last state {state}, info {info}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn retries(env: &Env) {
    let app = env.app().build().unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    let r = app.send_task("s.flaky", (2,)).unwrap();
    // The RETRY state is stored with the cause between attempts.
    let info = wait_for(&r, "RETRY", |s, _| *s == State::Retry);
    assert_eq!(info["exc_type"], "ValueError");
    assert_eq!(r.get::<u32>(T).unwrap(), 2);
    // Past max_retries (2) the cause is the failure; three attempts ran.
    let e = failure(app.send_task("s.auto", ()).unwrap().get::<()>(T).unwrap_err());
    assert_eq!((e.exception.exc_type.as_str(), e.exception.message()), ("ValueError", "attempt 2".to_owned()));
    // Over the default max_retries (3): the task's own error is the failure.
    let e = failure(app.send_task("s.flaky", (5,)).unwrap().get::<u32>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "ValueError");
    w.shutdown();
}

fn countdown_and_expires(env: &Env) {
    let app = env.app().build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let sent = Instant::now();
    let r = app
        .send_task_with("t.add", (1, 2), Map::new(), &SendOptions::new().countdown(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 3);
    assert!(sent.elapsed() >= Duration::from_millis(300), "ran before its countdown");
    // Expired while waiting for its ETA: not run, stored REVOKED (expired).
    let opts = SendOptions::new().countdown(Duration::from_millis(300)).expires_in(Duration::from_millis(100));
    let e = failure(app.send_task_with("t.add", (1, 2), Map::new(), &opts).unwrap().get::<i64>(T).unwrap_err());
    assert_eq!((e.state.clone(), e.exception.exc_type.as_str()), (State::Revoked, "TaskRevokedError"));
    assert_eq!(e.exception.message(), "expired");
    w.shutdown();
}

fn time_limits(env: &Env) {
    let app = env.app().build().unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    // Hard limit from the message's timelimit header: an async body is abandoned.
    let opts = SendOptions::new().time_limit(0.2);
    let started = Instant::now();
    let e = failure(app.send_task_with("t.sleep", (5_000,), Map::new(), &opts).unwrap().get::<u64>(T).unwrap_err());
    assert_eq!(
        (e.exception.exc_type.as_str(), e.exception.exc_module.as_str()),
        ("TimeLimitExceeded", "billiard.exceptions")
    );
    assert_eq!(e.exception.exc_message, json!([0.2]));
    assert!(started.elapsed() < Duration::from_secs(4), "the hard limit did not stop the wait");
    // A blocking body is stopped waiting for too (its thread finishes on its own).
    let e = failure(app.send_task_with("s.block", (1_000,), Map::new(), &opts).unwrap().get::<()>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "TimeLimitExceeded");
    w.shutdown();
}

/// Issue 14: a soft limit stops a body that does not watch it, as Celery's raise inside the task
/// does; a body that watches it runs on and decides.
fn soft_time_limits(env: &Env) {
    let app = env.app().configure(|c| c.task_soft_time_limit = Some(0.1)).build().unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    // An async body that never asks about its limit is dropped at its await.
    let started = Instant::now();
    let e = failure(app.send_task("t.sleep", (5_000,)).unwrap().get::<u64>(T).unwrap_err());
    assert_eq!(
        (e.exception.exc_type.as_str(), e.exception.exc_module.as_str()),
        ("SoftTimeLimitExceeded", "billiard.exceptions")
    );
    assert!(started.elapsed() < Duration::from_secs(3), "the soft limit did not stop the body");
    // The message's own soft limit, on a blocking body: the worker stops waiting at once.
    let opts = SendOptions::new().soft_time_limit(0.2);
    let started = Instant::now();
    let e = failure(app.send_task_with("s.block", (3_000,), Map::new(), &opts).unwrap().get::<()>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "SoftTimeLimitExceeded");
    assert!(started.elapsed() < Duration::from_secs(2), "the soft limit did not free the slot");
    // A body that watches its limit (asked before it passed) stops cleanly by itself...
    let e = failure(app.send_task("s.soft", ()).unwrap().get::<()>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "SoftTimeLimitExceeded");
    // ...or keeps running past it and returns what it likes.
    assert_eq!(app.send_task("s.soft_ignored", (300,)).unwrap().get::<String>(T).unwrap(), "finished");
    // The task option declares the same for a body that never asks.
    assert_eq!(app.send_task("s.soft_option", (300,)).unwrap().get::<u64>(T).unwrap(), 300);
    // A sync body that overran its soft limit without watching fails as if it had raised.
    let e = failure(app.send_task("t.hog", (300,)).unwrap().get::<u64>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "SoftTimeLimitExceeded");
    w.shutdown();
}

/// Issue 15's seams: every outcome reaches the one hook list (received, the outcome, unknown
/// names), and the after-store point sees each recorded outcome with its run's context — after
/// the store took the write, or at once when nothing is stored.
fn every_outcome_reaches_the_hooks(env: &Env) {
    let (seen, app) = recording(env, |sig| {
        Some(match sig {
            Signal::TaskReceived { headers } => format!("received {}", headers.task),
            Signal::TaskUnknown { name, .. } => format!("unknown {name}"),
            Signal::TaskRecorded { task, state, result, ctx, .. } => {
                format!("recorded {task} {state} {result} ran={}", ctx.is_some())
            }
            _ => return None,
        })
    });
    let w = app.worker().concurrency(1).start().unwrap();
    assert_eq!(app.send_task("t.add", (2, 3)).unwrap().get::<i64>(T).unwrap(), 5);
    app.send_task("t.fail", ("x",)).unwrap().get::<()>(T).unwrap_err();
    let e = failure(app.send_task("s.nope", ()).unwrap().get::<()>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "NotRegistered");
    // Nothing stored: recorded all the same, as soon as the task ran.
    app.send_task_with("t.add", (20, 22), Map::new(), &SendOptions::new().ignore_result(true)).unwrap();
    let until = Instant::now() + T;
    while !seen.lock().unwrap().iter().any(|s| s.starts_with("recorded t.add SUCCESS 42")) {
        assert!(Instant::now() < until, "the ignored result was never recorded: {:?}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    w.shutdown();
    let seen = seen.lock().unwrap().clone();
    for want in [
        "received t.add",
        "recorded t.add SUCCESS 5 ran=true",
        "received t.fail",
        "unknown s.nope",
        "recorded s.nope FAILURE",
        "recorded t.add SUCCESS 42 ran=true",
    ] {
        assert!(seen.iter().any(|s| s.starts_with(want)), "no {want:?} in {seen:?}");
    }
    assert!(seen.iter().any(|s| s.starts_with("recorded t.fail FAILURE") && s.ends_with("ran=true")), "{seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("recorded s.nope FAILURE") && s.ends_with("ran=false")), "{seen:?}");
}

fn rate_limits(env: &Env) {
    let app = env.app().build().unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    // 20/s, kombu's bucket of one: 10 starts are spaced 50 ms apart over both shards.
    let started = Instant::now();
    let rs: Vec<_> = (0..10).map(|_| app.send_task("s.limited", ()).unwrap()).collect();
    for r in &rs {
        r.get::<u64>(T).unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(400), "10 tasks at 20/s took {:?}", started.elapsed());
    // Removed at run time: the next burst is not spaced.
    w.set_rate_limit("s.limited", None).unwrap();
    assert!(w.set_rate_limit("s.nope", Some("1/s")).is_err());
    assert!(w.set_rate_limit("s.limited", Some("fast")).unwrap_err().to_string().contains("fast"));
    w.shutdown();
}

fn acks_reject_and_ignore(env: &Env) {
    let app = env
        .app()
        .configure(|c| {
            c.task_acks_late = true;
            c.task_acks_on_failure_or_timeout = false;
        })
        .build()
        .unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    // Reject(requeue=True): back to the queue, delivered again.
    assert_eq!(app.send_task("s.reject", ()).unwrap().get::<String>(T).unwrap(), "second delivery");
    // Reject(requeue=False): dropped; Celery 5.7 stores FAILURE Reject.
    let e = failure(app.send_task("s.drop", ()).unwrap().get::<()>(T).unwrap_err());
    assert_eq!(e.exception.exc_type, "Reject");
    // Ignore: nothing stored.
    let r = app.send_task("s.ignore", ()).unwrap();
    // A timed-out acks_late task with acks_on_failure_or_timeout off is requeued: it fails
    // first, then its second delivery succeeds.
    let opts = SendOptions::new().time_limit(0.2);
    let r2 = app.send_task_with("s.slow_first", (5_000,), Map::new(), &opts).unwrap();
    wait_for(&r2, "the redelivered run's SUCCESS", |s, _| *s == State::Success);
    // On Redis r2 was watched from its send and keeps the first ready state it saw, the
    // timeout's FAILURE (as Celery's result cache does); a fresh handle reads the SUCCESS.
    assert!(app.client().async_result(r2.id()).get::<bool>(T).unwrap());
    assert_eq!(r.state().unwrap(), State::Pending, "Ignore stored nothing");
    w.shutdown();
}

fn track_started_and_update_state(env: &Env) {
    let app = env.app().configure(|c| c.task_track_started = true).build().unwrap();
    let w = app.worker().concurrency(1).start().unwrap();
    let r = app.send_task("t.sleep", (400,)).unwrap();
    let info = wait_for(&r, "STARTED", |s, _| *s == State::Started);
    assert_eq!(info["pid"], json!(std::process::id()));
    assert_eq!(info["hostname"], json!(w.hostname()));
    assert_eq!(r.get::<u64>(T).unwrap(), 400);
    let r = app.send_task("s.progress", (3,)).unwrap();
    let info = wait_for(&r, "PROGRESS 2/3", |s, i| s.as_str() == "PROGRESS" && i["current"] == 2);
    assert_eq!(info["total"], 3);
    assert_eq!(r.get::<u32>(T).unwrap(), 3);
    w.shutdown();
}

fn revocation(env: &Env) {
    // STARTED is tracked so the revoke command's own REVOKED write (Celery 5.7 stores one only
    // over PENDING-like states) does not hide the terminated task's.
    let app = env.app().configure(|c| c.task_track_started = true).build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    // Revoked while it waits for its ETA.
    let r = app
        .send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().countdown(Duration::from_millis(500)))
        .unwrap();
    client.revoke(r.id(), false, None).unwrap();
    let e = failure(r.get::<i64>(T).unwrap_err());
    assert_eq!((e.state.clone(), e.exception.message()), (State::Revoked, "revoked".to_owned()));
    // Revoked before it was even sent.
    let id = uuid_like("early");
    client.revoke(&id, false, None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let r = app.send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().task_id(&id)).unwrap();
    assert_eq!(failure(r.get::<i64>(T).unwrap_err()).state, State::Revoked);
    // terminate=True stops a running body.
    let r = app.send_task("t.sleep", (10_000,)).unwrap();
    wait_for(&r, "STARTED", |s, _| *s == State::Started);
    let started = Instant::now();
    client.revoke(r.id(), true, Some("SIGKILL")).unwrap();
    let e = failure(r.get::<u64>(T).unwrap_err());
    assert_eq!((e.state.clone(), e.exception.message()), (State::Revoked, "terminated".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(w.revoked().contains(&id));
    assert_eq!(app.send_task("t.add", (2, 2)).unwrap().get::<i64>(T).unwrap(), 4, "the worker goes on");
    w.shutdown();
}

/// An app whose hooks record one line per signal `name` picks out (`None`: not recorded).
fn recording(
    env: &Env,
    name: impl Fn(&Signal<'_>) -> Option<String> + Send + Sync + 'static,
) -> (Arc<Mutex<Vec<String>>>, celeriac::App) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let app = env
        .app()
        .on_signal(move |sig| {
            if let Some(line) = name(sig) {
                s.lock().unwrap().push(line);
            }
        })
        .build()
        .unwrap();
    (seen, app)
}

fn signals(env: &Env) {
    let (seen, app) = recording(env, |sig| {
        Some(match sig {
            Signal::TaskPrerun { ctx } => format!("prerun {}", ctx.name()),
            Signal::TaskPostrun { ctx, state, .. } => format!("postrun {} {state}", ctx.name()),
            Signal::TaskSuccess { result, .. } => format!("success {result}"),
            Signal::TaskFailure { exception, .. } => format!("failure {}", exception.exc_type),
            Signal::TaskRetry { reason, .. } => format!("retry {reason}"),
            Signal::TaskRevoked { expired, .. } => format!("revoked expired={expired}"),
            Signal::WorkerReady { .. } => "worker_ready".into(),
            Signal::WorkerShutdown { .. } => "worker_shutdown".into(),
            _ => return None,
        })
    });
    let w = app.worker().concurrency(1).start().unwrap();
    app.send_task("t.add", (2, 3)).unwrap().get::<i64>(T).unwrap();
    app.send_task("t.fail", ("x",)).unwrap().get::<()>(T).unwrap_err();
    app.send_task("s.flaky", (1,)).unwrap().get::<u32>(T).unwrap();
    let opts = SendOptions::new().expires_in(Duration::from_millis(1)).countdown(Duration::from_millis(50));
    app.send_task_with("t.add", (1, 1), Map::new(), &opts).unwrap().get::<i64>(T).unwrap_err();
    w.shutdown();
    let seen = seen.lock().unwrap().clone();
    for want in [
        "worker_ready",
        "prerun t.add",
        "postrun t.add SUCCESS",
        "success 5",
        "failure ValueError",
        "retry Retry in 0.05s: ValueError('flaky')",
        "revoked expired=true",
        "worker_shutdown",
    ] {
        assert!(seen.iter().any(|s| s == want), "no {want:?} in {seen:?}");
    }
}

fn eta_task_limit(env: &Env) {
    let app = env
        .app()
        .configure(|c| {
            c.worker_eta_task_limit = Some(4);
            c.worker_prefetch_multiplier = 1;
        })
        .build()
        .unwrap();
    let client = app.client();
    let opts = SendOptions::new().countdown(Duration::from_secs(3600));
    for i in 0..20 {
        app.send_task_with("t.add", (i, i), Map::new(), &opts).unwrap();
    }
    let w = app.worker().concurrency(1).start().unwrap();
    // Four held ETA tasks sit outside prefetch; the fifth fills the prefetch window of one.
    let deadline = Instant::now() + T;
    while client.broker().queue_len(env.queue()).unwrap() > 15 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.broker().queue_len(env.queue()).unwrap(), 15, "the worker fetched past its ETA limit");
    w.shutdown();
    assert_eq!(client.broker().queue_len(env.queue()).unwrap(), 20, "held ETA tasks went back at shutdown");
}

fn worker_lost(env: &Env) {
    for requeue in [true, false] {
        let app = env
            .app()
            .configure(move |c| {
                c.task_acks_late = true;
                c.task_track_started = true;
                c.task_reject_on_worker_lost = requeue;
            })
            .build()
            .unwrap();
        let w = app.worker().concurrency(1).start().unwrap();
        let r = app.send_task("t.sleep", (10_000,)).unwrap();
        wait_for(&r, "STARTED", |s, _| *s == State::Started);
        w.request_shutdown(celeriac::ShutdownMode::Cold);
        w.join();
        let queued = app.client().broker().queue_len(env.queue()).unwrap();
        if requeue {
            assert_eq!(queued, 1, "reject_on_worker_lost requeues the abandoned task");
            // Gone before the next round: with -c 1 it would run first, for 10 s.
            assert_eq!(app.client().broker().purge(env.queue()).unwrap(), 1);
        } else {
            assert_eq!(queued, 0);
            assert_eq!(failure(r.get::<u64>(T).unwrap_err()).exception.exc_type, "WorkerLostError");
        }
    }
}

fn uuid_like(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// Stamps each scenario over the memory broker, a real redis-server and a real rabbitmq-server.

stamp!(
    retries,
    countdown_and_expires,
    time_limits,
    soft_time_limits,
    rate_limits,
    acks_reject_and_ignore,
    track_started_and_update_state,
    revocation,
    signals,
    every_outcome_reaches_the_hooks,
    eta_task_limit,
    worker_lost,
);

#[test]
fn a_hundred_thousand_eta_tasks_do_not_stall_a_shard() {
    // Seconds of CPU in a debug build: not at the same time as the timing-sensitive interop tests.
    let _serial = serial();
    let app = base("e").build().unwrap();
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    let opts = SendOptions::new().countdown(Duration::from_secs(3600));
    let n = 100_000;
    for i in 0..n {
        client.send_task_with("t.add", (i, i), Map::new(), &opts).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.broker().queue_len("celery").unwrap() > 0 {
        assert!(Instant::now() < deadline, "the worker did not take all {n} ETA tasks");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Ordinary tasks still run while every ETA task is held.
    for i in 0..100 {
        assert_eq!(app.send_task("t.add", (i, 1)).unwrap().get::<i64>(T).unwrap(), i + 1);
    }
    let stats = w.shutdown();
    assert_eq!(stats.processed, 100);
    assert_eq!(client.broker().queue_len("celery").unwrap(), n as usize, "every held task went back");
}

#[test]
fn the_revoked_set_survives_a_restart_with_statedb() {
    let db = std::env::temp_dir().join(format!("celeriac-statedb-it-{}", free_port()));
    let app = base("r").build().unwrap();
    let w = app.worker().concurrency(1).state_db(db.to_str().unwrap()).start().unwrap();
    let id = uuid_like("persisted");
    w.revoke(&id, false);
    w.shutdown();
    let w = app.worker().concurrency(1).state_db(db.to_str().unwrap()).start().unwrap();
    assert!(w.revoked().contains(&id));
    let r = app.send_task_with("t.add", (1, 1), Map::new(), &SendOptions::new().task_id(&id)).unwrap();
    assert_eq!(failure(r.get::<i64>(T).unwrap_err()).state, State::Revoked);
    w.shutdown();
    let _ = std::fs::remove_file(db);
}
