//! Interop with real Python Celery 5.7 over a real Redis (issue 4): Python client → celeriac
//! worker, celeriac client → Python worker, both workers on one queue, and unacked messages of
//! a killed worker restored by a worker of the other kind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use celeriac::{chord, group, App, Error, Signature, TaskRef};
use serde_json::{json, Value};

use crate::support::*;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn venv_bin(name: &str) -> PathBuf {
    let py = crate::fixtures::python();
    py.parent().unwrap().join(name)
}

/// examples/proj, built by `cargo test` beside this test binary.
pub(crate) fn proj_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples/proj");
    assert!(p.exists(), "{} is missing (cargo test builds examples)", p.display());
    p
}

/// A child process with its output in a log file; killed by PID on drop.
pub(crate) struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, name: &str) -> Proc {
        let log = std::env::temp_dir().join(format!("celeriac-{name}-{}-{}.log", std::process::id(), free_port()));
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child: Some(child), log }
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn wait_for(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Warm shutdown (SIGTERM) and wait for the exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), 15);
            let _ = c.wait();
        }
    }

    pub(crate) fn kill(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), sig);
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), 15);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                send_signal(c.id(), 9);
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn celeriac_worker(server: &RedisServer, config: Option<&Path>, name: &str) -> Proc {
    celeriac_worker_with(server, config, name, &[])
}

fn celeriac_worker_with(server: &RedisServer, config: Option<&Path>, name: &str, extra: &[&str]) -> Proc {
    celeriac_worker_on(&server.url(), &server.url(), config, name, extra)
}

/// examples/proj's worker on `broker` with results in `backend`, once it said `ready.`.
pub(crate) fn celeriac_worker_on(
    broker: &str,
    backend: &str,
    config: Option<&Path>,
    name: &str,
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(proj_bin());
    cmd.args(["worker", "-b", broker, "--result-backend", backend, "-l", "info", "-n", &format!("{name}@%h")]);
    if !extra.contains(&"-c") {
        cmd.args(["-c", "2"]);
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(extra);
    cmd.env_remove("CELERY_BROKER_URL").env_remove("CELERY_RESULT_BACKEND");
    let p = Proc::spawn(cmd, name);
    p.wait_for("ready.", Duration::from_secs(20));
    p
}

fn python_worker(server: &RedisServer, env: &[(&str, &str)], name: &str) -> Proc {
    python_worker_on(&server.url(), &server.url(), env, name)
}

/// tests/python/pyproj.py's solo worker on `broker` with results in `backend`, quiet (no
/// gossip, mingle or heartbeats).
pub(crate) fn python_worker_on(broker: &str, backend: &str, env: &[(&str, &str)], name: &str) -> Proc {
    python_worker_flags(broker, backend, env, name, &["--without-gossip", "--without-mingle", "--without-heartbeat"])
}

/// tests/python/pyproj.py's solo worker with `flags`, once it said `ready.`.
fn python_worker_flags(broker: &str, backend: &str, env: &[(&str, &str)], name: &str, flags: &[&str]) -> Proc {
    let mut cmd = Command::new(venv_bin("celery"));
    cmd.current_dir(root().join("tests/python"))
        .args(["-A", "pyproj", "worker", "-P", "solo", "-l", "info"])
        .args(flags)
        .args(["-n", &format!("{name}@%h")])
        .env("CELERY_BROKER_URL", broker)
        .env("CELERY_RESULT_BACKEND", backend);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc::spawn(cmd, name);
    p.wait_for("ready.", Duration::from_secs(30));
    p
}

fn client_app(server: &RedisServer) -> App {
    App::builder("interop").use_env(false).broker(&server.url()).result_backend(&server.url()).build().unwrap()
}

#[test]
fn python_client_calls_a_celeriac_worker() {
    let _serial = serial();
    let server = RedisServer::start();
    let mut worker = celeriac_worker(&server, None, "rs1");
    python_checks(&server, &worker, "client_checks.py", "all python client checks passed");
    worker.stop();
    assert_nothing_unacked(&server, &worker);
}

/// What a user checks after a burst: nothing left in kombu's unacked bookkeeping (each entry
/// left there runs again after the visibility timeout).
fn assert_nothing_unacked(server: &RedisServer, worker: &Proc) {
    let url = server.url();
    let (hash, index) =
        (frame_int(&redis_cmd(&url, &["HLEN", "unacked"])), frame_int(&redis_cmd(&url, &["ZCARD", "unacked_index"])));
    assert_eq!((hash, index), (0, 0), "left in unacked / unacked_index; worker log:\n{}", worker.output());
}

/// Issue 14's report, as a user met it: a Python client's burst of `proj.tasks.add` into a
/// two-shard celeriac worker with stealing on left thousands of entries in `unacked`.
#[test]
fn a_python_client_burst_leaves_nothing_unacked() {
    let _serial = serial();
    let server = RedisServer::start();
    let mut worker = celeriac_worker(&server, None, "rs7");
    let out = Command::new(crate::fixtures::python())
        .current_dir(root().join("tests/python"))
        .args(["burst.py", "5000"])
        .env("CELERY_BROKER_URL", server.url())
        .env("CELERY_RESULT_BACKEND", server.url())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("burst of 5000 done"), "{text}\n{}", worker.output());
    worker.stop();
    assert!(worker.output().contains("shut down"), "{}", worker.output());
    assert_nothing_unacked(&server, &worker);
}

/// Issue 14: with acks_late, a SIGKILL of a worker draining a backlog lost 4–5 messages each
/// time: a popped batch was in neither the list nor `unacked` until a later write landed. Popped
/// and stashed in one script now, every message survives the kill and is restored.
#[test]
fn a_sigkill_while_draining_loses_no_acks_late_message() {
    let _serial = serial();
    let server = RedisServer::start();
    let cfg = std::env::temp_dir().join(format!("celeriac-interop-{}.toml", free_port()));
    std::fs::write(&cfg, "task_acks_late = true\n[broker_transport_options]\nvisibility_timeout = 3\n").unwrap();
    let client = client_app(&server).client();
    let n = 20_000;
    let rs = client.send_batch("proj.tasks.add", (0..n).map(|i| (i, 1))).unwrap();
    for round in 0..3 {
        let mut w = celeriac_worker_with(&server, Some(&cfg), &format!("rs8-{round}"), &["--without-stealing"]);
        // Kill it mid-drain, while batches are being popped.
        let left = frame_int(&redis_cmd(&server.url(), &["LLEN", "celery"]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while frame_int(&redis_cmd(&server.url(), &["LLEN", "celery"])) > left - 2000 {
            assert!(Instant::now() < deadline, "the worker is not draining:\n{}", w.output());
            std::thread::sleep(Duration::from_millis(2));
        }
        w.kill(9);
    }
    let mut w = celeriac_worker(&server, Some(&cfg), "rs8-last");
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get::<i64>(Duration::from_secs(60)).unwrap(), i as i64 + 1, "task {i} lost");
    }
    w.stop();
    assert_nothing_unacked(&server, &w);
    let _ = std::fs::remove_file(cfg);
}

/// Runs a Python check script against `server`; it must exit 0 and print `done`.
fn python_checks(server: &RedisServer, worker: &Proc, script: &str, done: &str) {
    python_checks_on(&server.url(), &server.url(), worker, script, done)
}

/// Runs a Python script (with arguments) against `broker` and `backend`; it must exit 0 and
/// print `done`.
pub(crate) fn python_checks_on(broker: &str, backend: &str, worker: &Proc, script: &str, done: &str) {
    python_checks_on_with(broker, backend, worker, script, done, &[])
}

/// [`python_checks_on`] with more environment for the script.
pub(crate) fn python_checks_on_with(
    broker: &str,
    backend: &str,
    worker: &Proc,
    script: &str,
    done: &str,
    env: &[(&str, &str)],
) {
    let mut args = script.split(' ');
    let out = Command::new(crate::fixtures::python())
        .current_dir(root().join("tests/python"))
        .arg(args.next().unwrap())
        .args(args)
        .envs(env.iter().copied())
        .env("CELERY_BROKER_URL", broker)
        .env("CELERY_RESULT_BACKEND", backend)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}\nworker log:\n{}", worker.output());
    assert!(text.contains(done), "{text}");
}

#[test]
fn python_client_sees_celeriac_task_semantics() {
    let _serial = serial();
    let server = RedisServer::start();
    let worker = celeriac_worker(&server, None, "rs6");
    python_checks(&server, &worker, "semantics_checks.py", "all python semantics checks passed");
    let log = worker.output();
    for line in [
        "retry: Retry in 0.1s",
        "Hard time limit (0.5s) exceeded",
        "Soft time limit (1s) exceeded",
        "Tasks flagged as revoked",
        "Terminated",
    ] {
        assert!(log.contains(line), "no {line:?} in the worker log:\n{log}");
    }
}

#[test]
fn celeriac_client_calls_a_python_worker() {
    let _serial = serial();
    const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.add");
    const XSUM: TaskRef<(Vec<i64>,), i64> = TaskRef::new("proj.tasks.xsum");
    let server = RedisServer::start();
    let _py = python_worker(&server, &[], "py1");
    let app = client_app(&server);
    let client = app.client();
    assert_eq!(ADD.delay(&client, (4, 4)).unwrap().get(T).unwrap(), 8);
    assert_eq!(XSUM.delay(&client, (vec![1, 2, 3],)).unwrap().get(T).unwrap(), 6);
    let mut kw = serde_json::Map::new();
    kw.insert("y".into(), json!(5));
    let r = client.send_task_with("proj.tasks.add", (1,), kw, &Default::default()).unwrap();
    assert_eq!(r.get::<i64>(T).unwrap(), 6);
    match client.send_task("proj.tasks.fail", ("boom",)).unwrap().get::<i64>(T) {
        Err(Error::TaskFailed(f)) => {
            assert_eq!((f.exception.exc_type.as_str(), f.exception.exc_module.as_str()), ("ValueError", "builtins"));
            assert_eq!(f.exception.message(), "boom");
            assert!(f.traceback.unwrap().contains("ValueError: boom"));
        }
        other => panic!("expected a ValueError from Python, got {other:?}"),
    }
    // the Python worker sleeps in solo mode: a short timeout is an error, not a hang
    let slow = client.send_task("proj.tasks.sleep", (1,)).unwrap();
    assert!(matches!(slow.get::<f64>(Duration::from_millis(100)), Err(Error::Timeout { .. })));
    assert_eq!(slow.get::<f64>(T).unwrap(), 1.0);
}

#[test]
fn mixed_fleet_runs_each_task_exactly_once() {
    let _serial = serial();
    const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.add");
    let server = RedisServer::start();
    let py = python_worker(&server, &[], "py2");
    let app = App::builder("proj")
        .use_env(false)
        .broker(&server.url())
        .result_backend(&server.url())
        .task("proj.tasks.add", ["x", "y"], |x: i64, y: i64| x + y)
        .build()
        .unwrap();
    let client = app.client();
    let n = 2000;
    let rs: Vec<_> = (0..n).map(|i| ADD.delay(&client, (i, 1)).unwrap()).collect();
    let w = app.worker().concurrency(2).start().unwrap();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get(T).unwrap(), i as i64 + 1);
    }
    let ours = w.shutdown().processed;
    std::thread::sleep(Duration::from_millis(300));
    let theirs = py.output().matches("succeeded in").count() as u64;
    assert!(ours > 0 && theirs > 0, "both workers took tasks: celeriac {ours}, python {theirs}");
    assert_eq!(ours + theirs, n as u64, "each task ran exactly once (celeriac {ours} + python {theirs})");
    assert_nothing_unacked(&server, &py);
}

fn wait_unacked(url: &str, at_least: i64, worker: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut most = 0;
    loop {
        let held = frame_int(&redis_cmd(url, &["HLEN", "unacked"]));
        if held >= at_least {
            return;
        }
        most = most.max(held);
        if Instant::now() >= deadline {
            let queued = frame_int(&redis_cmd(url, &["LLEN", "celery"]));
            panic!(
                "the worker never held {at_least} unacked messages (at most {most}; {queued} still queued); its log:\n{}",
                worker.output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn python_restores_what_a_killed_celeriac_worker_left_unacked() {
    let _serial = serial();
    let server = RedisServer::start();
    let cfg = std::env::temp_dir().join(format!("celeriac-interop-{}.toml", free_port()));
    std::fs::write(&cfg, "task_acks_late = true\n[broker_transport_options]\nvisibility_timeout = 4\n").unwrap();
    let mut rs_worker = celeriac_worker(&server, Some(&cfg), "rs2");
    let client = client_app(&server).client();
    // All six are taken and stashed in `unacked` before the kill (a kill between a pop and its
    // stash loses the message in kombu too; that window is not what this test is about).
    let rs: Vec<_> = (0..6).map(|_| client.send_task("proj.tasks.sleep", (4,)).unwrap()).collect();
    wait_unacked(&server.url(), 6, &rs_worker);
    rs_worker.kill(9);
    assert_eq!(frame_int(&redis_cmd(&server.url(), &["HLEN", "unacked"])), 6, "the killed worker left all six unacked");
    let _py = python_worker(&server, &[("PYPROJ_VISIBILITY", "4")], "py3");
    for r in &rs {
        assert_eq!(r.get::<f64>(Duration::from_secs(60)).unwrap(), 4.0);
    }
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn celeriac_restores_what_a_killed_python_worker_left_unacked() {
    let _serial = serial();
    let server = RedisServer::start();
    let mut py = python_worker(&server, &[("PYPROJ_ACKS_LATE", "1"), ("PYPROJ_PREFETCH", "4")], "py4");
    let client = client_app(&server).client();
    let rs: Vec<_> = (0..4).map(|_| client.send_task("proj.tasks.sleep", (2,)).unwrap()).collect();
    // A solo Python worker runs one task inside its event loop: it holds what it took unacked.
    wait_unacked(&server.url(), 1, &py);
    py.kill(9);
    assert!(frame_int(&redis_cmd(&server.url(), &["HLEN", "unacked"])) >= 1);
    let app = App::builder("proj")
        .use_env(false)
        .broker(&server.url())
        .result_backend(&server.url())
        .configure(|c| {
            c.broker_transport_options.insert("visibility_timeout".into(), 2.into());
        })
        .task("proj.tasks.sleep", ["seconds"], |s: f64| async move {
            celeriac::rt::sleep(Duration::from_secs_f64(s)).await;
            s
        })
        .build()
        .unwrap();
    let w = app.worker().concurrency(2).start().unwrap();
    for r in &rs {
        assert_eq!(r.get::<f64>(Duration::from_secs(40)).unwrap(), 2.0);
    }
    w.shutdown();
}

#[test]
fn a_worker_whose_runtime_cannot_start_exits_with_the_reason() {
    // glommio's io_uring rings need 512 KiB of locked memory; under a 16 KiB `ulimit -l` the
    // shards cannot be built. The worker must say so and exit, not wait for them forever.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -l 16 && exec \"$0\" worker -b memory:// --result-backend memory:// -c 2")
        .arg(proj_bin())
        .env_remove("CELERY_BROKER_URL")
        .env_remove("CELERY_RESULT_BACKEND");
    let mut p = Proc::spawn(cmd, "memlock");
    let child = p.child.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker hung at start:\n{}", p.output());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let out = p.output();
    assert!(out.contains("could not start") && out.contains("MemLockLimit") && out.contains("ulimit -l"), "{out}");
}

#[test]
fn a_celeriac_worker_restores_what_a_killed_celeriac_worker_left_unacked() {
    let _serial = serial();
    let server = RedisServer::start();
    let cfg = std::env::temp_dir().join(format!("celeriac-interop-{}.toml", free_port()));
    std::fs::write(&cfg, "task_acks_late = true\n[broker_transport_options]\nvisibility_timeout = 4\n").unwrap();
    let mut first = celeriac_worker(&server, Some(&cfg), "rs3");
    let client = client_app(&server).client();
    let rs: Vec<_> = (0..6).map(|_| client.send_task("proj.tasks.sleep", (4,)).unwrap()).collect();
    wait_unacked(&server.url(), 6, &first);
    first.kill(9);
    assert_eq!(frame_int(&redis_cmd(&server.url(), &["HLEN", "unacked"])), 6, "the killed worker left all six unacked");
    let _second = celeriac_worker(&server, Some(&cfg), "rs4");
    for r in &rs {
        assert_eq!(r.get::<f64>(Duration::from_secs(40)).unwrap(), 4.0);
    }
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn a_second_signal_turns_a_warm_shutdown_cold() {
    let _serial = serial();
    let server = RedisServer::start();
    let mut worker = celeriac_worker(&server, None, "rs5");
    let client = client_app(&server).client();
    let r = client.send_task("proj.tasks.sleep", (30,)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while frame_int(&redis_cmd(&server.url(), &["HLEN", "unacked"])) == 0 && worker.output().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = worker.child.as_ref().unwrap().id();
    send_signal(pid, 15);
    worker.wait_for("warm shutdown", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        matches!(worker.child.as_mut().unwrap().try_wait(), Ok(None)),
        "a warm shutdown waits for the running task"
    );
    let cold = Instant::now();
    send_signal(pid, 15);
    worker.child.as_mut().unwrap().wait().unwrap();
    assert!(cold.elapsed() < Duration::from_secs(5), "the second signal stops the worker at once");
    assert!(worker.output().contains("cold shutdown"), "{}", worker.output());
    // Abandoned, not finished: stored as Celery stores a task whose pool child a cold shutdown
    // killed.
    match r.get::<f64>(T).unwrap_err() {
        celeriac::Error::TaskFailed(f) => assert_eq!(f.exception.exc_type, "WorkerLostError", "{f:?}"),
        e => panic!("{e}"),
    }
}

#[test]
fn fanout_publish_and_psubscribe_speak_kombus_channels() {
    let _serial = serial();
    use celeriac::protocol::{ControlRequest, DeliveryInfo, Envelope, Event, Properties};
    let server = RedisServer::start();
    let app = client_app(&server);
    let celeriac::transport::Broker::Redis(broker) = app.client().broker().clone() else { unreachable!() };
    // Python's `celery inspect ping` arrives on the pidbox fanout channel.
    let sub = broker.subscribe_fanout("celery.pidbox", "");
    let out = Command::new(venv_bin("celery"))
        .current_dir(root().join("tests/python"))
        .args(["-A", "pyproj", "inspect", "ping", "-t", "0.5"])
        .env("CELERY_BROKER_URL", server.url())
        .env("CELERY_RESULT_BACKEND", server.url())
        .output()
        .unwrap();
    let _ = out;
    let (channel, raw) = sub.recv_timeout(Duration::from_secs(10)).expect("the ping request");
    assert_eq!(channel, "/0.celery.pidbox");
    let env = Envelope::<serde_json::Map<String, serde_json::Value>>::decode(&raw).unwrap();
    let req: ControlRequest = serde_json::from_slice(&env.body().unwrap()).unwrap();
    assert_eq!(req.method, "ping");

    // A worker-heartbeat we publish reaches a kombu consumer of Celery's event exchange.
    let mut py = Command::new(crate::fixtures::python());
    py.current_dir(root().join("tests/python"))
        .arg("event_listener.py")
        .env("CELERY_BROKER_URL", server.url())
        .env("CELERY_RESULT_BACKEND", server.url());
    let listener = Proc::spawn(py, "evrecv");
    let event = Event {
        kind: "worker-heartbeat".into(),
        hostname: "rs@test".into(),
        timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64(),
        utcoffset: 0.0,
        pid: std::process::id(),
        clock: 1,
        fields: serde_json::from_value(json!({"freq": 2.0, "active": 0, "processed": 0, "sw_ident": "celeriac", "sw_ver": "0.1.0", "sw_sys": "Linux"})).unwrap(),
    };
    let body = serde_json::to_vec(&event).unwrap();
    let mut headers = serde_json::Map::new();
    headers.insert("hostname".into(), json!("rs@test"));
    let info = DeliveryInfo { exchange: "celeryev".into(), routing_key: "worker.heartbeat".into(), redelivered: false };
    let env = Envelope::new(
        headers,
        Properties { delivery_mode: 1, ..Properties::default() },
        "application/json",
        "utf-8",
        &body,
        info,
        uuid_like(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listener.output().contains("worker-heartbeat") {
        assert!(Instant::now() < deadline, "Python never saw the event:\n{}", listener.output());
        broker.publish_fanout("celeryev", "worker.heartbeat", env.encode()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(listener.output().contains("rs@test"), "{}", listener.output());
}

fn uuid_like() -> String {
    format!("{:032x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// Issue 17's first part: a Python client's chains, link callbacks and errbacks run on a
/// celeriac worker, and a celeriac client's chain runs on a Python worker.
#[test]
fn canvas_chains_and_links_run_across_kinds() {
    let _serial = serial();
    let server = RedisServer::start();
    let mut worker = celeriac_worker(&server, None, "rs9");
    python_checks(&server, &worker, "canvas_checks.py", "all python canvas checks passed");
    worker.stop();
    assert_nothing_unacked(&server, &worker);
    // A chain built by celeriac's client on a Python worker: add(4, 4) | mul(8) | add.si(1, 1).
    let _py = python_worker(&server, &[], "py9");
    let client = client_app(&server).client();
    let (mul_id, last_id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let step = |task: &str, args: Value, id: &str, immutable: bool| {
        let mut s = celeriac::protocol::Signature::new(task, args.as_array().unwrap().clone());
        s.immutable = immutable;
        s.options.insert("task_id".into(), json!(id));
        s
    };
    let mut opts = celeriac::SendOptions::new();
    opts.embed.chain = Some(vec![
        step("proj.tasks.add", json!([1, 1]), &last_id, true),
        step("proj.tasks.mul", json!([8]), &mul_id, false),
    ]);
    let first = client.send_task_with("proj.tasks.add", (4, 4), serde_json::Map::new(), &opts).unwrap();
    assert_eq!(first.get::<i64>(T).unwrap(), 8);
    let backend = client.backend();
    let wait = |id: &str| {
        let deadline = Instant::now() + T;
        loop {
            if let Some(m) = backend.get(id).unwrap().filter(|m| m.status == celeriac::State::Success) {
                return m;
            }
            assert!(Instant::now() < deadline, "step {id} never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(wait(&mul_id).result, json!(64));
    let last = wait(&last_id);
    assert_eq!((last.result.clone(), last.parent_id.as_deref()), (json!(2), Some(mul_id.as_str())));
    // Chords, groups, chunks and map built by celeriac's client, run by the Python worker.
    let add = |x: i64, y: i64| Signature::new("proj.tasks.add", vec![json!(x), json!(y)]);
    let xsum = || Signature::new("proj.tasks.xsum", vec![]);
    let flow = chord((0..10).map(|i| add(i, i)).collect(), xsum()) | Signature::new("proj.tasks.add", vec![json!(1)]);
    assert_eq!(client.send_signature(&flow).unwrap().get::<i64>(T).unwrap(), 91);
    let g = client.send_signature(&group(vec![add(1, 1), add(2, 2)])).unwrap();
    assert_eq!(g.get::<Vec<i64>>(T).unwrap(), vec![2, 4]);
    let pairs = (0..5).map(|i| json!([i, i])).collect();
    let parts = client.send_signature(&celeriac::canvas::chunks(&add(0, 0), pairs, 2)).unwrap();
    assert_eq!(parts.get::<Value>(T).unwrap(), json!([[0, 2], [4, 6], [8]]));
    let mapped = celeriac::canvas::xmap(&xsum(), vec![json!([1, 2]), json!([3])]);
    assert_eq!(client.send_signature(&mapped).unwrap().get::<Value>(T).unwrap(), json!([3, 3]));
}

/// One chord whose header tasks run on a Python and a celeriac worker at once: both count it
/// with the same keys and scripts, and the body runs once with every result in order.
#[test]
fn a_chord_counts_parts_run_by_both_kinds() {
    let _serial = serial();
    let server = RedisServer::start();
    let cfg = std::env::temp_dir().join(format!("celeriac-interop-{}.toml", free_port()));
    std::fs::write(&cfg, "result_extended = true\n").unwrap();
    let py = python_worker(&server, &[("PYPROJ_RESULT_EXTENDED", "1")], "py10");
    let rs = celeriac_worker(&server, Some(&cfg), "rs10");
    let client = client_app(&server).client();
    let header: Vec<Signature> = (0..200).map(|i| Signature::new("proj.tasks.add", vec![json!(i), json!(1)])).collect();
    let (frozen, _) = celeriac::canvas::freeze(&chord(header, Signature::new("proj.tasks.xsum", vec![])));
    let r = client.send_signature(&frozen).unwrap();
    assert_eq!(r.get::<i64>(Duration::from_secs(60)).unwrap(), (1..=200).sum::<i64>());
    let mut workers = std::collections::BTreeSet::new();
    for member in frozen.kwargs["header"]["kwargs"]["tasks"].as_array().unwrap() {
        let meta = client.backend().get(member["options"]["task_id"].as_str().unwrap()).unwrap().unwrap();
        workers.insert(meta.worker.unwrap_or_default().split('@').next().unwrap().to_owned());
    }
    assert_eq!(workers.into_iter().collect::<Vec<_>>(), vec!["py10", "rs10"], "the parts ran on both kinds");
    drop(py);
    assert_nothing_unacked(&server, &rs);
    let _ = std::fs::remove_file(cfg);
}

/// Celery's own command line sees a celeriac worker on Redis: `celery inspect ping`, `celery
/// status`, and `celery control revoke` answered (it said "No nodes replied" before).
#[test]
fn celery_inspect_ping_status_and_control_revoke_get_replies() {
    let _serial = serial();
    let server = RedisServer::start();
    let worker = celeriac_worker(&server, None, "rs14");
    let celery = |args: &[&str]| {
        let out = Command::new(venv_bin("celery"))
            .current_dir(root().join("tests/python"))
            .args(["-A", "pyproj"])
            .args(args)
            .env("CELERY_BROKER_URL", server.url())
            .env("CELERY_RESULT_BACKEND", server.url())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "celery {args:?} failed:\n{text}\nworker log:\n{}", worker.output());
        text
    };
    let ping = celery(&["inspect", "ping", "--timeout", "3"]);
    assert!(ping.contains("rs14@") && ping.contains("pong"), "{ping}");
    let status = celery(&["status", "--timeout", "3"]);
    assert!(status.contains("rs14@") && status.contains("OK"), "{status}");
    let revoke = celery(&["control", "revoke", "--timeout", "3", "some-task-id"]);
    assert!(revoke.contains("tasks {'some-task-id'} flagged as revoked"), "{revoke}");

    // add_consumer / cancel_consumer from Celery's command line, applied at once.
    let client = client_app(&server).client();
    let opts = celeriac::SendOptions::new().queue("parked");
    let parked = client.send_task_with("proj.tasks.add", (1, 2), serde_json::Map::new(), &opts).unwrap();
    let added = celery(&["control", "add_consumer", "parked", "--timeout", "3"]);
    assert!(added.contains("add consumer parked"), "{added}");
    assert_eq!(parked.get::<i64>(Duration::from_secs(10)).unwrap(), 3, "{}", worker.output());
    let queues = celery(&["inspect", "active_queues", "--timeout", "3"]);
    assert!(queues.contains("'name': 'parked'") && queues.contains("'name': 'celery'"), "{queues}");
    let cancelled = celery(&["control", "cancel_consumer", "parked", "--timeout", "3"]);
    assert!(cancelled.contains("no longer consuming from parked"), "{cancelled}");
    let queues = celery(&["inspect", "active_queues", "--timeout", "3"]);
    assert!(!queues.contains("'name': 'parked'"), "{queues}");
}

/// Gossip with a Python worker: a celeriac worker lists it among its peers from its events, and
/// drops it when its heartbeats stop (killed with SIGKILL: no `worker-offline`).
#[test]
fn gossip_sees_a_python_worker_come_and_go() {
    let _serial = serial();
    let server = RedisServer::start();
    let app = on_redis("gossip", &server).build().unwrap();
    let w = app.worker().concurrency(1).hostname("rs17@%h").start().unwrap();
    let mut py = python_worker_flags(&server.url(), &server.url(), &[], "py17", &[]);
    let seen = || w.peers().iter().any(|p| p.starts_with("py17@"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen() {
        assert!(Instant::now() < deadline, "the Python worker never seen: {:?}\n{}", w.peers(), py.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    py.kill(9);
    let deadline = Instant::now() + Duration::from_secs(12);
    while seen() {
        assert!(Instant::now() < deadline, "a worker without heartbeats still listed: {:?}", w.peers());
        std::thread::sleep(Duration::from_millis(100));
    }
    w.shutdown();
}

/// Celery 5.7's own event receiver and `inspect`/`control` against a celeriac worker run with
/// `-E` (tests/python/events_checks.py): worker heartbeats and task events with the fields
/// Flower reads, `celery.events.state` tracking them, and every inspect command answered.
#[test]
fn celery_sees_a_celeriac_workers_events_and_inspects_it() {
    let _serial = serial();
    let server = RedisServer::start();
    let worker = celeriac_worker_on(&server.url(), &server.url(), None, "rs15", &["-E"]);
    let log = worker.output();
    let node = log.lines().find_map(|l| l.split_whitespace().find(|w| w.starts_with("rs15@"))).expect("the node name");
    let script = format!("events_checks.py {}", node.trim_end_matches(['.', ':']));
    python_checks_on(&server.url(), &server.url(), &worker, &script, "all events checks passed");
}

/// A worker that took a chord's dispatch claim and died before sending the body: the claim
/// lapses, and the worker whose part found the chord complete but claimed looks again and sends
/// the body (once).
#[test]
fn a_chord_whose_claim_holder_died_is_sent_after_the_claim_lapses() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let worker = celeriac_worker(&server, None, "rs13");
    let client = client_app(&server).client();
    let body = Signature::new("proj.tasks.xsum", vec![]).set("queue", "bodies");
    let header: Vec<Signature> = (0..2).map(|_| Signature::new("proj.tasks.sleep", vec![json!(1)])).collect();
    let (frozen, _) = celeriac::canvas::freeze(&chord(header, body));
    let gid = frozen.kwargs["header"]["options"]["task_id"].as_str().unwrap().to_owned();
    client.send_signature(&frozen).unwrap();
    // A claim of a worker that is gone, taken before the parts end (as if it had counted the
    // last part and died).
    redis_cmd(&url, &["SET", &format!("celery-taskset-meta-{gid}.c"), "a-dead-worker", "EX", "3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "bodies"])), 0, "the claim is someone else's");
    let deadline = Instant::now() + Duration::from_secs(30);
    while frame_int(&redis_cmd(&url, &["LLEN", "bodies"])) == 0 {
        assert!(Instant::now() < deadline, "the body was never sent:\n{}", worker.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "bodies"])), 1);
    assert_nothing_unacked(&server, &worker);
}

/// Beyond Celery's own tests: a chord's body is sent once when a worker dies between storing a
/// part and counting it (here every count fails first, then the worker is SIGKILLed with all
/// six parts stored and unacked), and when a part runs again after the chord is done.
#[test]
fn a_chord_body_is_sent_once_when_parts_run_twice_or_their_worker_is_killed() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let cfg = std::env::temp_dir().join(format!("celeriac-interop-{}.toml", free_port()));
    std::fs::write(&cfg, "task_acks_late = true\n[broker_transport_options]\nvisibility_timeout = 3\n").unwrap();
    let mut first = celeriac_worker(&server, Some(&cfg), "rs11");
    let client = client_app(&server).client();
    // The body goes to a queue nobody consumes, so every send of it stays there to be counted.
    let body = Signature::new("proj.tasks.xsum", vec![]).set("queue", "bodies");
    let header: Vec<Signature> = (0..6).map(|i| Signature::new("proj.tasks.add", vec![json!(i), json!(i)])).collect();
    let (frozen, _) = celeriac::canvas::freeze(&chord(header, body));
    let gid = frozen.kwargs["header"]["options"]["task_id"].as_str().unwrap().to_owned();
    let ids: Vec<String> = frozen.kwargs["header"]["kwargs"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["options"]["task_id"].as_str().unwrap().to_owned())
        .collect();
    // A wrong type where the chord's done-set lives: each part is stored, then its count fails.
    let done_set = format!("celery-taskset-meta-{gid}.d");
    redis_cmd(&url, &["SET", &done_set, "not a set"]);
    client.send_signature(&frozen).unwrap();
    let deadline = Instant::now() + T;
    while ids.iter().any(|id| client.backend().get(id).unwrap().is_none()) {
        assert!(Instant::now() < deadline, "the parts never ran:\n{}", first.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    first.wait_for("counting it toward chord", T);
    wait_unacked(&url, 6, &first);
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "bodies"])), 0, "no body before the parts are counted");
    first.kill(9);
    redis_cmd(&url, &["DEL", &done_set]);
    let second = celeriac_worker(&server, Some(&cfg), "rs12");
    let deadline = Instant::now() + Duration::from_secs(30);
    while frame_int(&redis_cmd(&url, &["LLEN", "bodies"])) == 0 {
        assert!(Instant::now() < deadline, "the body was never sent:\n{}", second.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A copy of the first part, as a redelivery would bring it, after the chord is done.
    let mut again = Signature::new("proj.tasks.add", vec![json!(0), json!(0)]).set("task_id", &ids[0]);
    again = again.set("group_id", &gid).set("group_index", 0).set("chord", &frozen.kwargs["body"]);
    client.send_signature(&again).unwrap();
    let deadline = Instant::now() + T;
    while frame_int(&redis_cmd(&url, &["LLEN", "celery"])) > 0 || frame_int(&redis_cmd(&url, &["HLEN", "unacked"])) > 0
    {
        assert!(Instant::now() < deadline, "the copy never ran:\n{}", second.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "bodies"])), 1, "the body is sent exactly once");
    let envelope: Value =
        serde_json::from_str(&frame_str(&redis_cmd(&url, &["LINDEX", "bodies", "0"])).unwrap()).unwrap();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(envelope["body"].as_str().unwrap()).unwrap();
    let body: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(body[0], json!([[0, 2, 4, 6, 8, 10]]), "the header's results in order");
    assert_nothing_unacked(&server, &second);
    let _ = std::fs::remove_file(cfg);
}

/// GETs `path` from an HTTP server on loopback; the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path)
}

/// One HTTP/1.0 request without a body; the status and the body of the answer.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let code = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// Flower 2.0 (pip) watching a Redis fleet that holds a celeriac worker run with `-E`: its
/// `/api/workers` lists the worker with what `inspect` answered (stats, registered tasks,
/// queues), and its `/api/tasks` the worker's tasks in their final states, from the events.
#[test]
fn flower_lists_a_celeriac_worker_and_its_tasks() {
    let _serial = serial();
    let server = RedisServer::start();
    let worker = celeriac_worker_on(&server.url(), &server.url(), None, "fl1", &["-E"]);
    let port = free_port();
    let mut cmd = Command::new(venv_bin("celery"));
    cmd.current_dir(root().join("tests/python"))
        .args(["-A", "pyproj", "flower", &format!("--port={port}"), "--address=127.0.0.1"])
        .env("CELERY_BROKER_URL", server.url())
        .env("CELERY_RESULT_BACKEND", server.url())
        .env("FLOWER_UNAUTHENTICATED_API", "true");
    let flower = Proc::spawn(cmd, "flower");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/healthcheck").0 != 200 {
        assert!(Instant::now() < deadline, "flower never answered:\n{}", flower.output());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Flower's event receiver is up once it answers; give its consumer a moment to bind.
    std::thread::sleep(Duration::from_secs(1));
    let client = client_app(&server).client();
    let ok = client.send_task("proj.tasks.add", (2, 3)).unwrap();
    let bad = client.send_task("proj.tasks.fail", ("boom",)).unwrap();
    assert_eq!(ok.get::<i64>(T).unwrap(), 5);
    let _ = bad.get::<Value>(T);

    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks = loop {
        let (code, body) = http_get(port, "/api/tasks");
        let tasks: Value = serde_json::from_str(&body).unwrap_or_default();
        let state = |id: &str| tasks[id]["state"].as_str().map(str::to_owned);
        if state(ok.id()).as_deref() == Some("SUCCESS") && state(bad.id()).as_deref() == Some("FAILURE") {
            break tasks;
        }
        assert!(Instant::now() < deadline, "/api/tasks ({code}): {body}\nflower:\n{}", flower.output());
        std::thread::sleep(Duration::from_millis(300));
    };
    let t = &tasks[ok.id()];
    assert_eq!((t["name"].as_str(), t["result"].as_str()), (Some("proj.tasks.add"), Some("5")), "{t}");
    assert!(t["worker"].as_str().is_some_and(|w| w.starts_with("fl1@")), "{t}");
    assert!(t["runtime"].as_f64().is_some_and(|r| r >= 0.0), "{t}");
    assert!(tasks[bad.id()]["exception"].as_str().is_some_and(|e| e.contains("boom")), "{}", tasks[bad.id()]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let (node, w) = loop {
        let (code, body) = http_get(port, "/api/workers?refresh=1");
        let workers: Value = serde_json::from_str(&body).unwrap_or_default();
        let found = workers.as_object().and_then(|m| m.iter().find(|(k, _)| k.starts_with("fl1@")));
        if let Some((k, v)) = found.filter(|(_, v)| v.get("stats").is_some() && v.get("registered").is_some()) {
            break (k.clone(), v.clone());
        }
        assert!(Instant::now() < deadline, "/api/workers ({code}): {body}\nflower:\n{}", flower.output());
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(w["stats"]["pool"]["max-concurrency"], 2, "{node}: {w}");
    assert!(w["stats"]["total"]["proj.tasks.add"].as_u64() >= Some(1), "{w}");
    assert!(w["registered"].as_array().unwrap().iter().any(|n| n == "proj.tasks.add"), "{w}");
    assert!(w["active_queues"].as_array().unwrap().iter().any(|q| q["name"] == "celery"), "{w}");

    // Flower's queue buttons: a consumer added to the worker, then cancelled.
    let parked = client
        .send_task_with("proj.tasks.add", (20, 1), serde_json::Map::new(), &celeriac::SendOptions::new().queue("flq"))
        .unwrap();
    let (code, body) = http(port, "POST", &format!("/api/worker/queue/add-consumer/{node}?queue=flq"));
    assert_eq!(code, 200, "{body}\nflower:\n{}", flower.output());
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "add consumer flq", "{body}");
    assert_eq!(parked.get::<i64>(T).unwrap(), 21);
    let (code, body) = http(port, "POST", &format!("/api/worker/queue/cancel-consumer/{node}?queue=flq"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "no longer consuming from flq", "{body}");
    drop(flower);
    drop(worker);
}
