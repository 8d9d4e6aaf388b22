//! Celery's command line in celeriac (issue 18), run as people run it, against a real
//! redis-server: `status`, `inspect`, `control`, `call`, `result`, `purge`, `events --dump`,
//! `report` against a celeriac worker and against Python Celery workers; the worker's service
//! flags (`-D`, `-f`, `--pidfile`, `-P solo`, the flags accepted with a note).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::interop::{celeriac_worker_on, proj_bin, python_worker_on, Proc};
use crate::support::*;

/// Runs `proj ARGS…` (global options first, as Celery's) with stdin closed.
fn proj(args: &[&str]) -> Output {
    Command::new(proj_bin())
        .args(args)
        .env_remove("CELERY_BROKER_URL")
        .env_remove("CELERY_RESULT_BACKEND")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `proj -b URL --result-backend URL ARGS…`, which must succeed; its stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let mut all = vec!["-b", url, "--result-backend", url];
    all.extend_from_slice(args);
    let o = proj(&all);
    assert!(o.status.success(), "proj {args:?} failed ({}):\n{}", o.status, text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn node_of(worker: &Proc, prefix: &str) -> String {
    let log = worker.output();
    let node = log.lines().find_map(|l| l.split_whitespace().find(|w| w.starts_with(prefix))).expect("the node name");
    node.trim_end_matches(['.', ':']).to_owned()
}

#[test]
fn the_command_line_drives_a_celeriac_worker() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let worker = celeriac_worker_on(&url, &url, None, "cli1", &["-E", "-c", "3", "--shards", "1"]);
    let node = node_of(&worker, "cli1@");
    assert!(worker.output().contains("concurrency: 3 (celeriac: 1 shard(s)"), "{}", worker.output());

    let status = ok(&url, &["status"]);
    assert!(status.contains(&format!("->  {node}: OK")) && status.contains("1 node online."), "{status}");
    let ping: Value = serde_json::from_str(ok(&url, &["inspect", "ping", "--json"]).trim()).unwrap();
    assert_eq!(ping[&node]["ok"], "pong", "{ping}");
    let registered = ok(&url, &["inspect", "registered", "-d", &node]);
    assert!(registered.contains("* proj.tasks.add"), "{registered}");

    // call prints the id; result prints the value; a failure is the exception and exit code 1.
    let id = ok(&url, &["call", "proj.tasks.add", "--args", "[2, 3]"]).trim().to_owned();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(ok(&url, &["result", &id, "--timeout", "10"]).trim(), "5");
    let bad = ok(&url, &["call", "proj.tasks.fail", "--args", "[\"boom\"]"]).trim().to_owned();
    let o = proj(&["-b", &url, "--result-backend", &url, "result", &bad, "--timeout", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ValueError: boom"), "{}", text(&o));
    let o = proj(&["-b", &url, "call", "proj.tasks.add", "--args", "{\"x\": 1}"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--args") && text(&o).contains("JSON list"), "{}", text(&o));

    // A running task in `inspect active` (as a table), stopped by `control revoke --terminate`.
    let long = ok(&url, &["call", "proj.tasks.sleep", "--args", "[30]"]).trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(&url, &["inspect", "active"]).contains(&long) {
        assert!(Instant::now() < deadline, "never active");
    }
    let active = ok(&url, &["inspect", "active"]);
    assert!(active.contains("NAME") && active.contains("proj.tasks.sleep"), "{active}");
    let revoked = ok(&url, &["control", "revoke", &long, "--terminate"]);
    assert!(revoked.contains(&format!("terminate: {long}")), "{revoked}");
    let o = proj(&["-b", &url, "--result-backend", &url, "result", &long, "--timeout", "10"]);
    assert!(text(&o).contains("REVOKED"), "{}", text(&o));

    let limit = ok(&url, &["control", "rate_limit", "proj.tasks.add", "100/s"]);
    assert!(limit.contains("new rate limit set successfully"), "{limit}");
    let grow = ok(&url, &["control", "pool_grow", "2"]);
    assert!(grow.contains("ERROR") && grow.contains("pool_grow"), "{grow}");
    let stats: Value = serde_json::from_str(ok(&url, &["inspect", "stats", "--json"]).trim()).unwrap();
    assert_eq!(stats[&node]["pool"]["max-concurrency"], 3, "{stats}");
    assert!(stats[&node]["total"]["proj.tasks.add"].as_u64() >= Some(1), "{stats}");

    // events --dump sees a task's life while it runs.
    let mut dump = Command::new(proj_bin());
    dump.args(["-b", &url, "events", "--dump", "--duration", "4"]);
    let dump = Proc::spawn(dump, "cli-events");
    dump.wait_for("Dumping events", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let id = ok(&url, &["call", "proj.tasks.add", "--args", "[20, 22]"]).trim().to_owned();
    dump.wait_for(&format!("task succeeded: proj.tasks.add({id}) args=(20, 22)"), Duration::from_secs(10));
    dump.wait_for(&format!("{node} ["), Duration::from_secs(1));

    // purge: what waits in a queue nobody consumes; asked first, and a "no" purges nothing.
    for _ in 0..3 {
        ok(&url, &["call", "proj.tasks.add", "--args", "[1, 1]", "--queue", "parked"]);
    }
    let no = proj(&["-b", &url, "purge", "-Q", "parked"]);
    assert!(!no.status.success() && text(&no).contains("There is no undo"), "{}", text(&no));
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "parked"])), 3);
    assert!(ok(&url, &["purge", "-f", "-Q", "parked"]).contains("Purged 3 messages from 1 known task queue."));
    assert_eq!(frame_int(&redis_cmd(&url, &["LLEN", "parked"])), 0);
    // The queue consumed from now on, then no longer.
    let id = ok(&url, &["call", "proj.tasks.add", "--args", "[5, 5]", "--queue", "parked"]).trim().to_owned();
    assert!(ok(&url, &["control", "add_consumer", "parked"]).contains("add consumer parked"));
    assert_eq!(ok(&url, &["result", &id, "--timeout", "10"]).trim(), "10");
    assert!(ok(&url, &["inspect", "active_queues"]).contains("parked"));
    assert!(ok(&url, &["control", "cancel_consumer", "parked"]).contains("no longer consuming from parked"));
    assert!(!ok(&url, &["inspect", "active_queues"]).contains("parked"));

    let report = ok(&url, &["report"]);
    assert!(report.contains("software -> celeriac:") && report.contains("broker_url"), "{report}");
    assert!(ok(&url, &["inspect", "report"]).contains("celeriac"));

    // shutdown: the worker stops warmly and says so for people.
    assert!(ok(&url, &["control", "shutdown"]).contains("shutdown sent"));
    worker.wait_for("shut down. processed", Duration::from_secs(10));
    let o = proj(&["-b", &url, "status", "--timeout", "0.5"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(text(&o).contains("No nodes replied within time constraint"), "{}", text(&o));
}

#[test]
fn the_command_line_drives_python_celery_workers() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let _py = python_worker_on(&url, &url, &[], "clipy");
    let status = ok(&url, &["status", "--timeout", "3"]);
    assert!(status.contains("clipy@") && status.contains("1 node online."), "{status}");
    let ping: Value = serde_json::from_str(ok(&url, &["inspect", "ping", "--json", "--timeout", "3"]).trim()).unwrap();
    let node = ping.as_object().unwrap().keys().next().unwrap().clone();
    assert!(node.starts_with("clipy@") && ping[&node]["ok"] == "pong", "{ping}");
    let registered = ok(&url, &["inspect", "registered", "-d", &node]);
    assert!(registered.contains("* proj.tasks.add"), "{registered}");
    let id = ok(&url, &["call", "proj.tasks.add", "--args", "[40, 2]"]).trim().to_owned();
    assert_eq!(ok(&url, &["result", &id, "--timeout", "20"]).trim(), "42");
    let stats: Value = serde_json::from_str(ok(&url, &["inspect", "stats", "--json", "-d", &node]).trim()).unwrap();
    assert_eq!(stats[&node]["pool"]["implementation"], "celery.concurrency.solo:TaskPool", "{stats}");
    let limit = ok(&url, &["control", "rate_limit", "proj.tasks.add", "10/m", "-d", &node]);
    assert!(limit.contains("new rate limit set successfully"), "{limit}");
    let revoked = ok(&url, &["control", "revoke", "some-task-id", "-d", &node]);
    assert!(revoked.contains("tasks {'some-task-id'} flagged as revoked"), "{revoked}");
    let ids = ok(&url, &["inspect", "revoked", "-d", &node]);
    assert!(ids.contains("* some-task-id"), "{ids}");
    // Mingle: a celeriac worker that starts now takes in the Python worker's revoked ids.
    let rs = celeriac_worker_on(&url, &url, None, "climingle", &[]);
    rs.wait_for("mingle: sync with 1 nodes", Duration::from_secs(5));
    let rs_node = node_of(&rs, "climingle@");
    let ours = ok(&url, &["inspect", "revoked", "-d", &rs_node]);
    assert!(ours.contains("* some-task-id"), "{ours}\n{}", rs.output());
}

#[test]
fn worker_service_flags_work_as_celerys() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let dir = std::env::temp_dir().join(format!("celeriac-cli-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (log, pid) = (dir.join("w.log"), dir.join("w.pid"));
    let (log_s, pid_s) = (log.to_str().unwrap(), pid.to_str().unwrap());
    // -D: back at once, the worker in the background, logging to -f, its pid in --pidfile.
    let o =
        proj(&["-b", &url, "worker", "-D", "-f", log_s, "--pidfile", pid_s, "-l", "info", "-n", "bg@%h", "-P", "solo"]);
    assert!(o.status.success(), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("ready.") {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon: u32 = std::fs::read_to_string(&pid).unwrap().trim().parse().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("concurrency: 1 (celeriac: 1 shard(s)"), "-P solo is one body on one shard:\n{logged}");
    assert!(ok(&url, &["status"]).contains("bg@"));
    // A second instance on the same pid file is refused, with the reason.
    let o = proj(&["-b", &url, "worker", "--pidfile", pid_s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("another instance is running"), "{}", text(&o));
    let id = ok(&url, &["call", "proj.tasks.add", "--args", "[1, 2]"]).trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap().contains(&format!("Task proj.tasks.add[{id}] succeeded")) {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    send_signal(daemon, 15);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid.exists() {
        assert!(Instant::now() < deadline, "the pid file outlived the worker");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A stale pid file (its process gone) is replaced; flags that do not apply are accepted
    // with a note; ones that cannot work are refused.
    std::fs::write(&pid, "999999\n").unwrap();
    let mut cmd = Command::new(proj_bin());
    cmd.args(["-b", &url, "worker", "--pidfile", pid_s, "-n", "fg@%h", "--autoscale", "6,2"]).args([
        "--max-tasks-per-child",
        "10",
        "-P",
        "threads",
        "-O",
        "fair",
        "--time-limit",
        "5",
    ]);
    let fg = Proc::spawn(cmd, "cli-fg");
    fg.wait_for("concurrency: 6", Duration::from_secs(20));
    fg.wait_for("--autoscale 6,2: celeriac does not grow or shrink", Duration::from_secs(1));
    fg.wait_for("there are no child processes to recycle", Duration::from_secs(1));
    fg.wait_for("-P threads:", Duration::from_secs(1));
    drop(fg);
    for (args, says) in [
        (vec!["worker", "-P", "nope"], "is not a pool"),
        (vec!["worker", "-c", "1", "--shards", "2"], "each shard runs at least one body"),
        (vec!["worker", "-O", "bogus"], "is not an optimization profile"),
    ] {
        let mut all = vec!["-b", url.as_str()];
        all.extend(args);
        let o = proj(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{all:?}: {}", text(&o));
    }
    let _ = std::fs::remove_dir_all(dir);
}
