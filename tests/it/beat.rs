//! Beat (issue 19): intervals firing one interval after start, state kept in the `-s` file and
//! missed runs fired once after a restart, many beats with one sending (in process on
//! memory://; separate `proj beat` processes on Redis and on RabbitMQ with the leader SIGKILLed),
//! crontab and solar next fire times against Python Celery 5.7, and a Python worker running what
//! beat sends.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac::config::BeatEntrySpec;
use serde_json::json;

use crate::interop::{proj_bin, Proc};
use crate::support::*;

fn every(secs: f64, task: &str) -> BeatEntrySpec {
    BeatEntrySpec {
        task: task.into(),
        schedule: Some(secs),
        args: vec![json!(1), json!(1)],
        ..BeatEntrySpec::default()
    }
}

/// An app on memory:// whose `b.tick` counts its runs.
fn ticking(name: &str, count: Arc<AtomicUsize>, secs: f64) -> celeriac::App {
    base(name)
        .task("b.tick", ["x", "y"], move |x: i64, y: i64| {
            count.fetch_add(1, Ordering::SeqCst);
            x + y
        })
        .configure(move |c| {
            c.beat_schedule.insert("tick".into(), every(secs, "b.tick"));
        })
        .build()
        .unwrap()
}

fn wait_until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn intervals_fire_one_interval_after_start_and_missed_runs_fire_once() {
    let count = Arc::new(AtomicUsize::new(0));
    let app = ticking("beat1", count.clone(), 0.3);
    let w = app.worker().concurrency(1).start().unwrap();
    let dir = std::env::temp_dir().join(format!("celeriac-beat-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("schedule.json");
    let started = Instant::now();
    let beat = app.beat().schedule_file(&file).start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count.load(Ordering::SeqCst), 0, "nothing before one interval has passed");
    wait_until("three runs", Duration::from_secs(5), || count.load(Ordering::SeqCst) >= 3);
    assert!(
        started.elapsed() >= Duration::from_millis(880),
        "three runs take three intervals: {:?}",
        started.elapsed()
    );
    beat.stop();
    let saved = celeriac::beat::load_state(&file).unwrap();
    let runs = saved["tick"].total_run_count;
    assert_eq!(runs as usize, count.load(Ordering::SeqCst));
    // Down for five intervals: the missed runs fire once at the restart, not five times.
    std::thread::sleep(Duration::from_millis(1500));
    let before = count.load(Ordering::SeqCst);
    let beat = app.beat().schedule_file(&file).start().unwrap();
    wait_until("the missed run", Duration::from_secs(2), || count.load(Ordering::SeqCst) > before);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(count.load(Ordering::SeqCst), before + 1, "missed runs fire once");
    beat.stop();
    assert_eq!(celeriac::beat::load_state(&file).unwrap()["tick"].total_run_count, runs + 1);
    // A bad entry fails at start, naming it.
    let bad = base("beat1b").configure(|c| {
        c.beat_schedule.insert("broken".into(), BeatEntrySpec { task: "t.add".into(), ..BeatEntrySpec::default() });
    });
    let e = bad.build().unwrap().beat().start().err().expect("no schedule").to_string();
    assert!(e.contains("beat_schedule.broken"), "{e}");
    w.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn of_two_beats_one_sends_and_the_other_takes_over() {
    let count = Arc::new(AtomicUsize::new(0));
    let app = ticking("beat2", count.clone(), 0.2);
    let w = app.worker().concurrency(1).start().unwrap();
    let first = app.beat().start().unwrap();
    let second = app.beat().start().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let n = count.load(Ordering::SeqCst);
    assert!((4..=6).contains(&n), "two beats, one sending: {n} runs in 1.1 s at 0.2 s");
    first.stop();
    // The follower looks at the lease every LEASE / 5 (1 s) and goes on from the runs the first
    // beat recorded.
    let before = count.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2200));
    let after = count.load(Ordering::SeqCst) - before;
    assert!((5..=11).contains(&after), "the second beat took over: {after} runs in 2.2 s");
    second.stop();
    w.shutdown();
}

/// A config file with one `proj.tasks.add` entry every `secs` seconds to `queue`.
fn write_schedule(path: &Path, entry: &str, secs: f64, args: &str, queue: &str) {
    let toml = format!(
        "[beat_schedule.{entry}]\ntask = \"proj.tasks.add\"\nschedule = {secs}\nargs = {args}\noptions = {{ queue = \"{queue}\" }}\n"
    );
    std::fs::write(path, toml).unwrap();
}

fn proj_beat(url: &str, config: &Path, name: &str) -> Proc {
    proj_beat_with(url, config, name, &[])
}

fn proj_beat_with(url: &str, config: &Path, name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(proj_bin());
    cmd.args(["beat", "-b", url, "--config"]).arg(config).args(["-l", "info"]).args(args);
    cmd.env_remove("CELERY_BROKER_URL").env_remove("CELERY_RESULT_BACKEND");
    let p = Proc::spawn(cmd, name);
    p.wait_for("beat: ready.", Duration::from_secs(20));
    p
}

/// Three `proj beat` processes on one Redis, the sending one SIGKILLed: another takes over
/// within the lease, and every send is one recorded run (none sent twice).
#[test]
fn three_beats_on_redis_send_once_and_survive_the_leaders_death() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let cfg = std::env::temp_dir().join(format!("celeriac-beat-{}.toml", free_port()));
    write_schedule(&cfg, "tick", 0.5, "[1, 1]", "beatq");
    let started = Instant::now();
    let mut beats: Vec<Proc> = ["bt1", "bt2", "bt3"].iter().map(|n| proj_beat(&url, &cfg, n)).collect();
    wait_until("the first sends", Duration::from_secs(10), || frame_int(&redis_cmd(&url, &["LLEN", "beatq"])) >= 4);
    let leader = beats.iter().position(|b| b.output().contains("holding the lease")).expect("a leader");
    beats[leader].kill(9);
    let at_kill = frame_int(&redis_cmd(&url, &["LLEN", "beatq"]));
    let deadline = Instant::now() + celeriac::beat::LEASE + Duration::from_secs(3);
    wait_until("a new leader", deadline - Instant::now(), || {
        frame_int(&redis_cmd(&url, &["LLEN", "beatq"])) > at_kill + 2
    });
    for b in &mut beats {
        b.stop();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = frame_int(&redis_cmd(&url, &["LLEN", "beatq"]));
    let state = frame_str(&redis_cmd(&url, &["HGET", "celeriac-beat-state-proj", "tick"])).expect("recorded runs");
    let recorded: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(sent, recorded["total_run_count"].as_i64().unwrap(), "every send is one recorded run");
    assert!(sent as f64 <= elapsed / 0.5 + 1.0, "{sent} sends in {elapsed:.1} s at 0.5 s: some were sent twice");
    let _ = std::fs::remove_file(cfg);
}

/// The same on RabbitMQ, where the lease is a single-active-consumer queue holding the recorded
/// runs: three `proj beat`, the sending one SIGKILLed, another sends from the runs it was handed
/// (each beat's `-s` file has its last count: the last leader's is every send), nothing twice;
/// the holder folds its records into a snapshot, so the lease queue stays short.
#[test]
fn three_beats_on_rabbitmq_send_once_and_survive_the_leaders_death() {
    let rabbit = rabbit();
    let url = rabbit.url();
    let dir = std::env::temp_dir().join(format!("celeriac-beat-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("beat.toml");
    write_schedule(&cfg, "tick", 0.1, "[1, 1]", "beatq-amqp");
    let files: Vec<_> = (1..=3).map(|i| dir.join(format!("s{i}.json"))).collect();
    let started = Instant::now();
    let mut beats: Vec<Proc> = files
        .iter()
        .enumerate()
        .map(|(i, f)| proj_beat_with(&url, &cfg, &format!("ba{i}"), &["-s", f.to_str().unwrap()]))
        .collect();
    // Past one compaction (64 records) before the leader dies.
    wait_until("the first sends", Duration::from_secs(20), || rabbit.ready("beatq-amqp") >= 80);
    let lease_queue = rabbit.ready("celeriac-beat-lease-proj");
    assert!(lease_queue <= 66, "{lease_queue} records held: the snapshot did not fold them");
    let leaders: Vec<usize> = (0..3).filter(|&i| beats[i].output().contains("holding the lease")).collect();
    assert_eq!(leaders.len(), 1, "one beat leads");
    beats[leaders[0]].kill(9);
    let at_kill = rabbit.ready("beatq-amqp");
    let deadline = Instant::now() + celeriac::beat::LEASE + Duration::from_secs(3);
    wait_until("a new leader", deadline - Instant::now(), || rabbit.ready("beatq-amqp") > at_kill + 10);
    for b in &mut beats {
        b.stop();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = rabbit.ready("beatq-amqp");
    let counted = files
        .iter()
        .filter_map(|f| celeriac::beat::load_state(f).ok())
        .filter_map(|s| s.get("tick").map(|t| t.total_run_count))
        .max()
        .expect("a state file");
    eprintln!("{sent} sent, {counted} recorded in {elapsed:.1} s");
    assert_eq!(sent as u64, counted, "every send is one recorded run");
    assert!(sent as f64 <= elapsed / 0.1 + 1.0, "{sent} sends in {elapsed:.1} s at 0.1 s: some were sent twice");
    let _ = rabbit.ctl(&["delete_queue", "beatq-amqp"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// 900 random crontab specs and instants in UTC, Europe/Paris and America/New_York (DST
/// included): the next fire time is the one Python Celery 5.7 computes.
#[test]
fn crontab_next_fire_times_match_python_celery() {
    use celeriac::beat::Crontab;
    let script = crate::interop::root().join("tests/python/crontab_cases.py");
    let out = Command::new(crate::fixtures::python()).arg(script).args(["17", "300"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut cases = 0;
    let mut wrong = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let tz: chrono_tz::Tz = c["tz"].as_str().unwrap().parse().unwrap();
        let s = |k: &str| c["spec"][k].as_str().unwrap().to_owned();
        let cron = Crontab::parse(&s("minute"), &s("hour"), &s("day_of_week"), &s("day_of_month"), &s("month_of_year"))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let now = chrono::DateTime::parse_from_rfc3339(c["now"].as_str().unwrap()).unwrap().with_timezone(&tz);
        let want =
            chrono::DateTime::parse_from_rfc3339(c["next"].as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
        let ours = cron.next_after(&now).map(|t| t.with_timezone(&chrono::Utc));
        if ours != Some(want) {
            wrong.push(format!("{line} → ours {ours:?}"));
        }
        cases += 1;
    }
    assert_eq!(cases, 900);
    assert!(wrong.is_empty(), "{} of {cases} differ, first: {:#?}", wrong.len(), &wrong[..wrong.len().min(5)]);
}

/// 600 random solar events, places (one in five near or past the polar circles, where some
/// events wait for their season) and instants: the next event is the one Python Celery 5.7
/// computes with PyEphem, within `SOLAR_TOLERANCE_SECS`.
#[test]
fn solar_events_match_python_celery_with_ephem() {
    use celeriac::beat::{Solar, SOLAR_TOLERANCE_SECS};
    let script = crate::interop::root().join("tests/python/solar_cases.py");
    let out = Command::new(crate::fixtures::python()).arg(script).args(["23", "600"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (mut cases, mut worst) = (0, 0.0f64);
    let mut wrong = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let time = |k: &str| chrono::DateTime::parse_from_rfc3339(c[k].as_str().unwrap()).unwrap().to_utc();
        let solar = Solar::new(c["event"].as_str().unwrap(), c["lat"].as_f64().unwrap(), c["lon"].as_f64().unwrap())
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let ours = solar.next_after(time("now"));
        let gap = (ours - time("next")).num_milliseconds().abs() as f64 / 1000.0;
        worst = worst.max(gap);
        if gap > SOLAR_TOLERANCE_SECS {
            wrong.push(format!("{line} → ours {ours} ({gap} s)"));
        }
        cases += 1;
    }
    assert_eq!(cases, 600);
    assert!(wrong.is_empty(), "{} of {cases} differ, first: {:#?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    eprintln!("solar: {cases} cases, worst gap {worst:.2} s");
}

/// What celeriac's beat sends runs on a Python Celery worker, on Redis and on RabbitMQ.
#[test]
fn a_python_worker_runs_what_beat_sends() {
    let _serial = serial();
    let server = RedisServer::start();
    let url = server.url();
    let cfg = std::env::temp_dir().join(format!("celeriac-beat-{}.toml", free_port()));
    write_schedule(&cfg, "sum", 0.3, "[2, 3]", "pybeatq");
    for broker in [url.clone(), rabbit().url()] {
        let py = crate::interop::python_worker_on(&broker, &url, &[("PYPROJ_QUEUE", "pybeatq")], "pybeat");
        let mut beat = proj_beat(&broker, &cfg, "bt4");
        wait_until("two runs on the Python worker", Duration::from_secs(30), || {
            py.output().matches("succeeded in").count() >= 2
        });
        assert!(py.output().contains("proj.tasks.add"), "{broker}: {}", py.output());
        beat.stop();
    }
    let _ = rabbit().ctl(&["delete_queue", "pybeatq"]);
    let _ = std::fs::remove_file(cfg);
}
