//! End-to-end harness, celeriac side (run by `scripts/bench.sh`, which also runs Python Celery
//! in the same session and writes the table to `perf/results/`).
//!
//! Scenarios (each prints one JSON line):
//! - `drain`: N tasks loaded with no worker running, then the worker starts; seconds until the
//!   worker processed all N and its shutdown flushed every result and ack. `add(i, i)` with
//!   results, and a no-op with `ignore_result`. Default (early) acks.
//! - `rtt`: sequential `delay().get()` round trips; p50/p90/p99/p99.9/max (hdrhistogram).
//! - CPU per task (user+sys of this process during the drain / N) and peak RSS (VmHWM).
//! - `canvas` (Redis): a chord of `--chord` `add` parts into `tsum`, seconds from the first send
//!   to the body's result; and a chain of `--chain` `add` links, seconds to the last result and
//!   each hop (one step's `date_done` to the next's) p50/p99. Worker in this process, started and
//!   warmed first; afterwards the queue and `unacked` must be empty or the run fails.
//!
//! `cargo run --release --example perf -- --broker memory:// --n 200000 --rtt 5000`

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use celeriac::{App, TaskOptions, TaskRef};

fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn noop() {}

fn tsum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("perf.add");

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A memory figure of this process in MB: `VmHWM:` (peak RSS) or `VmRSS:` (now).
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn app(broker: &str, results: bool) -> App {
    let mut b = App::builder("perf")
        .use_env(false)
        .broker(broker)
        .configure(|c| c.worker_prefetch_multiplier = 64)
        .task("perf.add", ["x", "y"], add)
        .task_with("perf.noop", [], TaskOptions { ignore_result: Some(true), ..TaskOptions::default() }, noop);
    if results {
        b = b.result_backend(&results_url(broker));
    }
    b.build().expect("perf app")
}

/// Where results go: the broker itself on memory:// and Redis; `--results` (a Redis URL) with
/// an AMQP broker.
fn results_url(broker: &str) -> String {
    if broker.starts_with("amqp") {
        arg("--results", "")
    } else {
        broker.to_owned()
    }
}

fn flush_db(broker: &str) {
    let results = results_url(broker);
    if results.starts_with("redis") {
        redis_text(&results, &["FLUSHDB"]);
    }
}

/// What a user checks after a drain on RabbitMQ, once the worker stopped: nothing in the queue
/// (what a worker leaves unacked RabbitMQ requeues when its connection closes, so it would show
/// here), and with results a result key per task.
fn check_amqp_after_drain(app: &App, broker: &str, n: usize, results: bool) -> String {
    let mut left = 0;
    for _ in 0..20 {
        left = app.client().broker().queue_len("celery").expect("queue length");
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stored = if results {
        let keys = redis_text(&results_url(broker), &["EVAL", "return #redis.call('KEYS', 'celery-task-meta-*')", "0"]);
        keys.parse::<i64>().unwrap_or(-1)
    } else {
        n as i64
    };
    if (left, stored) != (0, n as i64) {
        eprintln!("FAILED drain: {left} messages left in the queue (ready or requeued unacked), {stored} of {n} results stored");
        std::process::exit(2);
    }
    format!(", \"left_in_queue\": {left}, \"results_stored\": {stored}")
}

/// The raw AMQP floor: a task-sized message published with confirms, consumed and acked with
/// nothing of Celery around it (`celeriac::transport::amqp::raw_floor`).
fn amqp_floor(broker: &str, n: usize) {
    let (publish, drain) = celeriac::transport::amqp::raw_floor(broker, n, 400).expect("amqp floor");
    println!(
        "{{\"impl\": \"floor\", \"scenario\": \"amqp_floor\", \"broker\": \"amqp\", \"n\": {n}, \"publish_per_s\": {:.0}, \"tasks_per_s\": {:.0}}}",
        n as f64 / publish,
        n as f64 / drain
    );
}

/// One command's reply from the broker's Redis, as text (for INFO and counters).
fn redis_text(broker: &str, args: &[&str]) -> String {
    let url = celeriac::transport::redis::RedisUrl::parse(broker).expect("redis url");
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match celeriac::transport::redis::command(&url, &args).expect("redis command") {
        celeriac::transport::redis::Reply::Int(n) => n.to_string(),
        r => r.as_text().unwrap_or_default(),
    }
}

/// `field:value` from an INFO section, as a number.
fn info_number(info: &str, field: &str) -> f64 {
    info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0.0)
}

/// Redis's own counters before a drain: commands processed and CPU seconds.
fn redis_counters(broker: &str) -> (f64, f64) {
    let stats = redis_text(broker, &["INFO", "stats"]);
    let cpu = redis_text(broker, &["INFO", "cpu"]);
    (
        info_number(&stats, "total_commands_processed"),
        info_number(&cpu, "used_cpu_sys") + info_number(&cpu, "used_cpu_user"),
    )
}

/// What a user checks after a drain on Redis: nothing left queued or in kombu's unacked
/// bookkeeping, and (with results) a result key per task. A drain that fails this is a failed
/// run, not a number: the harness exits non-zero.
fn check_redis_after_drain(broker: &str, n: usize, results: bool) -> String {
    let count = |args: &[&str]| redis_text(broker, args).parse::<i64>().unwrap_or(-1);
    let (unacked, index, queued) =
        (count(&["HLEN", "unacked"]), count(&["ZCARD", "unacked_index"]), count(&["LLEN", "celery"]));
    let stored = if results {
        let keys = redis_text(broker, &["EVAL", "return #redis.call('KEYS', 'celery-task-meta-*')", "0"]);
        keys.parse::<i64>().unwrap_or(-1)
    } else {
        n as i64
    };
    if (unacked, index, queued, stored) != (0, 0, 0, n as i64) {
        eprintln!(
            "FAILED drain: {unacked} left in unacked, {index} in unacked_index, {queued} still queued, {stored} of {n} results stored"
        );
        std::process::exit(2);
    }
    format!(", \"unacked_after\": {unacked}, \"results_stored\": {stored}")
}

fn drain(broker: &str, n: usize, task: &str) {
    flush_db(broker);
    let results = task == "perf.add";
    let app = app(broker, results);
    let client = app.client();
    let load = Instant::now();
    for chunk in (0..n as i64).collect::<Vec<_>>().chunks(10_000) {
        if results {
            client.send_batch("perf.add", chunk.iter().map(|i| (*i, *i))).expect("load");
        } else {
            client.send_batch("perf.noop", chunk.iter().map(|_| ())).expect("load");
        }
    }
    let loaded = load.elapsed();
    let on_redis = broker.starts_with("redis");
    let redis0 = if on_redis { redis_counters(broker) } else { (0.0, 0.0) };
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    // `--events 1`: task events on (`-E`), published as a worker would with nobody listening.
    let events = arg("--events", "0") == "1";
    // Without mingle's 1 s greeting: the drain's clock starts with the worker.
    let w = app.worker().task_events(events).mingle(false).start().expect("worker");
    let shards = w.stats().per_shard.len();
    while w.stats().processed < n as u64 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let stats = w.shutdown();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(stats.processed, n as u64);
    let redis = if on_redis {
        let (cmds1, rcpu1) = redis_counters(broker);
        // The two INFO calls of the first reading are in the count; they are noise at this n.
        let per_task = (cmds1 - redis0.0) / n as f64;
        let redis_cpu = (rcpu1 - redis0.1) * 1e6 / n as f64;
        let checked = check_redis_after_drain(broker, n, results);
        format!(", \"redis_cmds_per_task\": {per_task:.3}, \"redis_cpu_us_per_task\": {redis_cpu:.2}, \"stolen\": {}{checked}", stats.stolen)
    } else if broker.starts_with("amqp") {
        check_amqp_after_drain(&app, broker, n, results)
    } else {
        String::new()
    };
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"drain\", \"broker\": \"{}\", \"task\": \"{task}\", \"results\": {results}, \"events\": {events}, \"n\": {n}, \"shards\": {shards}, \"seconds\": {secs:.4}, \"tasks_per_s\": {:.0}, \"cpu_us_per_task\": {:.2}, \"load_seconds\": {:.3}, \"peak_rss_mb\": {:.1}{redis}}}",
        scheme(broker),
        n as f64 / secs,
        cpu * 1e6 / n as f64,
        loaded.as_secs_f64(),
        peak_rss_mb()
    );
}

/// A worker on a flushed `broker` with results, warmed up by 200 round trips.
fn warm_worker(broker: &str) -> (celeriac::WorkerHandle, celeriac::Client) {
    flush_db(broker);
    let app = app(broker, true);
    let shards: usize = arg("--shards", "0").parse().expect("--shards");
    let mut wb = app.worker();
    if shards > 0 {
        wb = wb.concurrency(shards);
    }
    let poll: u64 = arg("--busy-poll-us", "0").parse().expect("--busy-poll-us");
    wb = wb.busy_poll(Duration::from_micros(poll));
    let w = wb.start().expect("worker");
    let client = app.client();
    for i in 0..200 {
        ADD.delay(&client, (i, i)).unwrap().get(Duration::from_secs(10)).unwrap();
    }
    (w, client)
}

fn rtt(broker: &str, n: usize) {
    let (w, client) = warm_worker(broker);
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let mut sends = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for i in 0..n as i64 {
        let s = Instant::now();
        let r = ADD.delay(&client, (i, 1)).unwrap();
        sends.record(s.elapsed().as_nanos() as u64).unwrap();
        let v = r.get(Duration::from_secs(10)).unwrap();
        h.record(s.elapsed().as_nanos() as u64).unwrap();
        assert_eq!(v, i + 1);
    }
    w.shutdown();
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"rtt\", \"broker\": \"{}\", \"n\": {n}, {}, \"send_p50_us\": {:.1}}}",
        scheme(broker),
        latency_fields(&h),
        sends.value_at_quantile(0.5) as f64 / 1000.0
    );
}

/// Open-loop latency: `add` tasks sent at a fixed `rate` for `secs` seconds whatever the
/// worker does, each latency measured from the moment the schedule said to send it (not from
/// when the send happened), so a stall delays every later send's clock too — the correction for
/// coordinated omission. A sender thread of its own keeps the schedule (sleeping with 1 µs timer
/// slack, so it is late by a few µs, not by a runtime's 1 ms timer tick) and hands each send
/// and its result to a one-thread tokio runtime, so a slow publish delays only its own figure.
fn open_loop(broker: &str, rate: u64, secs: u64) {
    let (w, client) = warm_worker(broker);
    let n = rate * secs;
    let hist = std::sync::Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(3).expect("histogram")));
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("tokio");
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0) };
    let start = Instant::now();
    let mut waits = Vec::with_capacity(n as usize);
    let mut late = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        late.push(due.elapsed().as_nanos() as u64);
        let (hist, errors, client) = (hist.clone(), errors.clone(), client.clone());
        waits.push(rt.spawn(async move {
            let opts = celeriac::SendOptions::new();
            let sent = client.send_task_async("perf.add", (i, 1), serde_json::Map::new(), &opts).await;
            match sent {
                Ok(r) if r.get_async::<u64>(Duration::from_secs(30)).await.is_ok() => {
                    hist.lock().unwrap().record(due.elapsed().as_nanos() as u64).unwrap()
                }
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    rt.block_on(async {
        for t in waits {
            let _ = t.await;
        }
    });
    w.shutdown();
    late.sort_unstable();
    let late_p99 = late.get(late.len() * 99 / 100).copied().unwrap_or(0) as f64 / 1000.0;
    let h = hist.lock().unwrap();
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"open_loop\", \"broker\": \"{}\", \"rate\": {rate}, \"n\": {n}, \"errors\": {}, \"sender_late_p99_us\": {late_p99:.1}, {}}}",
        scheme(broker),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        latency_fields(&h)
    );
}

/// A few long bodies among many short ones: what cross-shard stealing buys. Two shards,
/// prefetch 64; each round sends one 200 ms body (sync, not declared blocking, so it blocks its
/// shard) and then 100 short ones; the shard that took the long body has reserved up to 63
/// short ones, which wait for it unless the idle shard steals them. 5 rounds.
fn skew(stealing: bool) {
    fn hog(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    let app = App::builder("perf")
        .use_env(false)
        .broker("memory://")
        .result_backend("memory://")
        .configure(|c| c.worker_prefetch_multiplier = 64)
        .task("perf.add", ["x", "y"], add)
        .task("perf.hog", ["ms"], hog)
        .build()
        .expect("app");
    let client = app.client();
    let w = app.worker().concurrency(2).stealing(stealing).start().expect("worker");
    let start = Instant::now();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let mut shorts = 0;
    for round in 0..5 {
        let long = client.send_task("perf.hog", (200,)).unwrap();
        let short: Vec<_> = (0..100).map(|i| (Instant::now(), ADD.delay(&client, (round, i)).unwrap())).collect();
        for (sent, r) in &short {
            r.get(Duration::from_secs(30)).unwrap();
            h.record(sent.elapsed().as_micros() as u64).unwrap();
        }
        shorts += short.len();
        long.get::<u64>(Duration::from_secs(30)).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = w.shutdown();
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"skew\", \"broker\": \"memory\", \"stealing\": {stealing}, \"long_tasks\": 5, \"short_tasks\": {shorts}, \"seconds\": {secs:.3}, \"short_p50_ms\": {:.2}, \"short_p99_ms\": {:.2}, \"stolen\": {}}}",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        stats.stolen
    );
}

fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// `n` countdown tasks (an hour away) held unacked by a 2-shard worker: the memory they cost
/// once fetched, and the round trip of ordinary tasks while they are held.
fn eta(n: usize) {
    let app = app("memory://", true);
    let client = app.client();
    let w = app.worker().concurrency(2).start().expect("worker");
    let rss0 = rss_mb();
    let opts = celeriac::SendOptions::new().countdown(Duration::from_secs(3600));
    for i in 0..n {
        client.send_task_with("perf.add", (i, i), serde_json::Map::new(), &opts).unwrap();
    }
    let rss_queued = rss_mb();
    let start = Instant::now();
    while client.broker().queue_len("celery").unwrap() > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let fetch_s = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let rss_held = rss_mb();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for i in 0..2000 {
        let t = Instant::now();
        ADD.delay(&client, (i, i)).unwrap().get(Duration::from_secs(10)).unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let stop = Instant::now();
    w.shutdown();
    let shutdown_s = stop.elapsed().as_secs_f64();
    let returned = client.broker().queue_len("celery").unwrap();
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"eta\", \"broker\": \"memory\", \"held\": {n}, \"fetch_s\": {fetch_s:.3}, \"rss_idle_mb\": {rss0:.1}, \"rss_queued_mb\": {rss_queued:.1}, \"rss_held_mb\": {rss_held:.1}, \"bytes_per_held\": {:.0}, \"rtt_p50_us\": {}, \"rtt_p99_us\": {}, \"shutdown_s\": {shutdown_s:.3}, \"returned\": {returned}}}",
        (rss_held - rss0) * 1048576.0 / n as f64,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
}

/// The floor under any Redis round trip shaped like Celery's on this machine: raw RESP over
/// blocking sockets, no celeriac and no parsing beyond reading replies. A worker thread pops the
/// task with BLPOP and PUBLISHes the result; the client LPUSHes and reads the published message
/// on a SUBSCRIBEd connection (the LPUSH reply is read afterwards, so it costs no wait). That is
/// four sleeping-thread wake-ups in sequence (client → Redis → worker → Redis → client) where a
/// celeriac or Python worker needs at least as many; a PING round trip (two) is printed beside it.
fn redis_floor(broker: &str, n: usize) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    let url = celeriac::transport::redis::RedisUrl::parse(broker).expect("redis url");
    let celeriac::transport::redis::RedisAddr::Tcp(host, port) = url.addr else {
        panic!("redis_floor needs a redis:// URL over TCP")
    };
    let addr = (host, port);
    let connect = || {
        let s = TcpStream::connect(&addr).expect("connect to redis");
        s.set_nodelay(true).expect("nodelay");
        s
    };
    fn cmd(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for p in parts {
            out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
    /// Reads one reply and returns its bulk strings (enough for the replies used here).
    fn reply(r: &mut BufReader<TcpStream>) -> Vec<Vec<u8>> {
        let mut line = String::new();
        r.read_line(&mut line).expect("read reply");
        match line.as_bytes()[0] {
            b'*' => {
                let n: i64 = line[1..].trim().parse().expect("array length");
                (0..n.max(0)).flat_map(|_| reply(r)).collect()
            }
            b'$' => {
                let n: i64 = line[1..].trim().parse().expect("bulk length");
                if n < 0 {
                    return Vec::new();
                }
                let mut buf = vec![0; n as usize + 2];
                std::io::Read::read_exact(r, &mut buf).expect("bulk");
                buf.truncate(n as usize);
                vec![buf]
            }
            b'-' => panic!("redis error: {line}"),
            _ => vec![line.trim().as_bytes().to_vec()],
        }
    }
    let mut w = BufReader::new(connect());
    let mut w_out = w.get_ref().try_clone().expect("clone");
    w_out.write_all(&cmd(&[b"DEL", b"floor.q"])).unwrap();
    reply(&mut w);
    let worker = std::thread::spawn(move || loop {
        w_out.write_all(&cmd(&[b"BLPOP", b"floor.q", b"0"])).unwrap();
        let got = reply(&mut w);
        if got.get(1).is_some_and(|v| v == b"stop") {
            return;
        }
        w_out.write_all(&cmd(&[b"PUBLISH", b"floor.r", got[1].as_slice()])).unwrap();
        reply(&mut w);
    });
    let mut sub = BufReader::new(connect());
    let mut sub_out = sub.get_ref().try_clone().expect("clone");
    sub_out.write_all(&cmd(&[b"SUBSCRIBE", b"floor.r"])).unwrap();
    reply(&mut sub);
    let mut c = BufReader::new(connect());
    let mut c_out = c.get_ref().try_clone().expect("clone");
    let mut rtt = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let mut ping = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for i in 0..n + 200 {
        let s = Instant::now();
        c_out.write_all(&cmd(&[b"LPUSH", b"floor.q", i.to_string().as_bytes()])).unwrap();
        let msg = reply(&mut sub);
        let took = s.elapsed();
        reply(&mut c);
        assert_eq!(msg[2], i.to_string().as_bytes());
        let s = Instant::now();
        c_out.write_all(&cmd(&[b"PING"])).unwrap();
        reply(&mut c);
        if i >= 200 {
            rtt.record(took.as_nanos() as u64).unwrap();
            ping.record(s.elapsed().as_nanos() as u64).unwrap();
        }
    }
    c_out.write_all(&cmd(&[b"LPUSH", b"floor.q", b"stop"])).unwrap();
    reply(&mut c);
    worker.join().expect("floor worker");
    print_floor("floor (raw RESP)", "redis", n, &rtt);
    print_floor("redis PING", "redis", n, &ping);
}

/// One floor measurement as a round-trip line of the report.
fn print_floor(what: &str, broker: &str, n: usize, h: &hdrhistogram::Histogram<u64>) {
    println!(
        "{{\"impl\": \"{what}\", \"scenario\": \"rtt\", \"broker\": \"{broker}\", \"n\": {n}, {}}}",
        latency_fields(h)
    );
}

/// The report's latency fields of a histogram of nanoseconds, in µs: p50, p90, p99, p99.9, max.
fn latency_fields(h: &hdrhistogram::Histogram<u64>) -> String {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "\"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"max_us\": {:.1}",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0
    )
}

/// The floor of an in-process round trip on this machine: a value sent to a peer that sends it
/// straight back, nothing else, with the client and the peer pinned to one CPU or to two. The
/// peer is a plain thread blocking in `recv` (two futex wake-ups) or a glommio executor as a
/// shard is (the wake-up crosses glommio's eventfd and io_uring, its park the membarrier).
fn memory_floor(n: usize) {
    fn pin(cpu: usize) {
        assert!(core_affinity::set_for_current(core_affinity::CoreId { id: cpu }), "pin to CPU {cpu}");
    }
    for (glommio, client_cpu) in [(false, 0), (false, 1), (true, 0), (true, 1)] {
        let (to_peer, peer_rx) = flume::unbounded::<u64>();
        let (peer_tx, from_peer) = flume::unbounded::<u64>();
        let peer = if glommio {
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
                .spawn(move || async move {
                    while let Ok(v) = peer_rx.recv_async().await {
                        peer_tx.send(v).unwrap();
                    }
                })
                .expect("glommio executor");
            std::thread::spawn(move || ex.join().expect("glommio peer"))
        } else {
            std::thread::spawn(move || {
                pin(0);
                while let Ok(v) = peer_rx.recv() {
                    peer_tx.send(v).unwrap();
                }
            })
        };
        let h = std::thread::spawn(move || {
            pin(client_cpu);
            let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            for i in 0..(n + 200) as u64 {
                let s = Instant::now();
                to_peer.send(i).unwrap();
                assert_eq!(from_peer.recv().unwrap(), i);
                if i >= 200 {
                    h.record(s.elapsed().as_nanos() as u64).unwrap();
                }
            }
            h
        })
        .join()
        .expect("floor client");
        peer.join().expect("floor peer");
        let what = format!(
            "floor ({}, {})",
            if glommio { "glommio executor" } else { "thread" },
            if client_cpu == 0 { "same CPU" } else { "other CPU" }
        );
        print_floor(&what, "memory", n, &h);
    }
}

fn scheme(url: &str) -> &str {
    url.split("://").next().unwrap_or(url)
}

/// Seconds since the epoch of a `date_done`.
fn done_at(meta: &celeriac::protocol::ResultMeta) -> f64 {
    let t = meta.date_done.as_deref().expect("a ready result has date_done");
    chrono::DateTime::parse_from_rfc3339(t).expect("date_done").timestamp_micros() as f64 / 1e6
}

fn canvas(broker: &str, parts: usize, links: usize) {
    use celeriac::{canvas, chord, Signature};
    use serde_json::json;
    flush_db(broker);
    let app = App::builder("perf")
        .use_env(false)
        .broker(broker)
        .result_backend(broker)
        .configure(|c| c.worker_prefetch_multiplier = 64)
        .task("perf.add", ["x", "y"], add)
        .task("perf.tsum", ["xs"], tsum)
        .build()
        .expect("perf app");
    let client = app.client();
    let worker = app.worker().concurrency(2).start().expect("worker");
    ADD.delay(&client, (1, 1)).unwrap().get(Duration::from_secs(10)).expect("warm-up");
    let header: Vec<Signature> =
        (0..parts as i64).map(|i| Signature::new("perf.add", vec![json!(i), json!(i)])).collect();
    let (t0, wall0) = (Instant::now(), chrono::Utc::now().timestamp_micros() as f64 / 1e6);
    let r = client.send_signature(&chord(header, Signature::new("perf.tsum", vec![]))).expect("chord");
    let sent = t0.elapsed().as_secs_f64();
    let v: i64 = r.get(Duration::from_secs(300)).expect("chord result");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(v, (0..parts as i64).map(|i| 2 * i).sum::<i64>(), "chord result");
    let stored = done_at(&client.backend().get(r.id()).unwrap().expect("body result")) - wall0;
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"chord\", \"broker\": \"{}\", \"n\": {parts}, \"seconds\": {secs:.4}, \"stored_seconds\": {stored:.4}, \"send_seconds\": {sent:.4}, \"parts_per_s\": {:.0}}}",
        scheme(broker),
        parts as f64 / stored
    );
    let mut flow = Signature::new("perf.add", vec![json!(0), json!(1)]);
    for _ in 1..links {
        flow = flow | Signature::new("perf.add", vec![json!(1)]);
    }
    let (flow, _) = canvas::freeze(&flow);
    let ids: Vec<String> = flow.kwargs["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["options"]["task_id"].as_str().unwrap().to_owned())
        .collect();
    let t0 = Instant::now();
    let r = client.send_signature(&flow).expect("chain");
    let v: i64 = r.get(Duration::from_secs(300)).expect("chain result");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(v, links as i64, "chain result");
    let done: Vec<f64> =
        ids.iter().map(|id| done_at(&client.backend().get(id).unwrap().expect("step result"))).collect();
    let mut hops: Vec<f64> = done.windows(2).map(|w| (w[1] - w[0]) * 1000.0).collect();
    hops.sort_by(f64::total_cmp);
    let q = |f: f64| hops[((hops.len() - 1) as f64 * f) as usize];
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"chain\", \"broker\": \"{}\", \"n\": {links}, \"seconds\": {secs:.4}, \"hop_p50_ms\": {:.3}, \"hop_p99_ms\": {:.3}}}",
        scheme(broker),
        q(0.5),
        q(0.99)
    );
    worker.shutdown();
    let (queued, unacked) = (redis_text(broker, &["LLEN", "celery"]), redis_text(broker, &["HLEN", "unacked"]));
    if (queued.as_str(), unacked.as_str()) != ("0", "0") {
        eprintln!("FAILED canvas: {queued} messages left in the queue, {unacked} in unacked");
        std::process::exit(2);
    }
}

/// Beat's precision and idle cost on memory://: `idle` entries due every hour (never in the run)
/// beside one due every 0.25 s; each run of that one is seen arriving at the worker, and its
/// lateness is the gap to the previous arrival minus the interval (beat measures an interval from
/// its last send, as Celery's does). CPU of the process over the run, less the worker's share of
/// the 0.25 s task, is the beat's.
fn beat(idle: usize, secs: f64) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = seen.clone();
    let app = App::builder("perfbeat")
        .use_env(false)
        .broker("memory://")
        .task("perf.add", ["x", "y"], add)
        .on_signal(move |s| {
            if let celeriac::Signal::TaskReceived { .. } = s {
                record.lock().unwrap().push(Instant::now());
            }
        })
        .configure(move |c| {
            let entry = |every: f64| celeriac::config::BeatEntrySpec {
                task: "perf.add".into(),
                schedule: Some(every),
                args: vec![serde_json::json!(1), serde_json::json!(1)],
                ..Default::default()
            };
            c.beat_schedule.insert("fast".into(), entry(0.25));
            for i in 0..idle {
                c.beat_schedule.insert(format!("idle-{i}"), entry(3600.0));
            }
        })
        .build()
        .expect("perf app");
    let worker = app.worker().concurrency(1).start().expect("worker");
    let cpu0 = cpu_seconds();
    let beat = app.beat().start().expect("beat");
    std::thread::sleep(Duration::from_secs_f64(secs));
    beat.stop();
    let cpu = cpu_seconds() - cpu0;
    worker.shutdown();
    let seen = seen.lock().unwrap();
    let mut late: Vec<f64> = seen.windows(2).map(|w| ((w[1] - w[0]).as_secs_f64() - 0.25).max(0.0) * 1000.0).collect();
    late.sort_by(f64::total_cmp);
    let q = |f: f64| late.get(((late.len().max(1) - 1) as f64 * f) as usize).copied().unwrap_or(f64::NAN);
    println!(
        "{{\"impl\": \"celeriac\", \"scenario\": \"beat\", \"broker\": \"memory\", \"entries\": {}, \"runs\": {}, \"late_p50_ms\": {:.3}, \"late_p99_ms\": {:.3}, \"cpu_share\": {:.4}}}",
        idle + 1,
        seen.len(),
        q(0.5),
        q(0.99),
        cpu / secs
    );
}

/// `inspect ping` of one node, `n` times in a row from this client: the wall time of each
/// call (reply queue set up, request sent, the node's reply read) and the time from the
/// request's publish to the reply. One JSON line.
fn ping(broker: &str, node: &str, worker: &str, n: usize) {
    let app = App::builder("perf").use_env(false).broker(broker).build().expect("app");
    let client = app.client();
    let inspect = client.inspect().destination([node]).limit(1).timeout(Duration::from_secs(2));
    let (mut wall, mut reply) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + 10 {
        let t0 = Instant::now();
        let pongs = inspect.ping().expect("ping");
        let took = t0.elapsed();
        let Some(p) = pongs.first() else { panic!("{node} did not answer ping {i}") };
        if i >= 10 {
            wall.push(took.as_secs_f64() * 1e6);
            reply.push(p.after.as_secs_f64() * 1e6);
        }
    }
    let q = |v: &mut Vec<f64>, f: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * f) as usize]
    };
    println!(
        "{}",
        serde_json::json!({"impl": "celeriac-client", "scenario": "ping", "broker": "redis", "worker": worker, "n": n,
            "wall_p50_us": q(&mut wall, 0.5), "wall_p99_us": q(&mut wall, 0.99),
            "reply_p50_us": q(&mut reply, 0.5), "reply_p99_us": q(&mut reply, 0.99)})
    );
}

fn main() {
    let broker = arg("--broker", "memory://");
    let n: usize = arg("--n", "200000").parse().expect("--n");
    let rtt_n: usize = arg("--rtt", "5000").parse().expect("--rtt");
    let what = arg("--scenario", "all");
    if what == "all" || what == "drain" || what == "drain_add" {
        drain(&broker, n, "perf.add");
    }
    if what == "all" || what == "drain" || what == "drain_noop" {
        drain(&broker, n, "perf.noop");
    }
    if what == "all" || what == "rtt" {
        rtt(&broker, rtt_n);
    }
    if what == "all" || what == "open_loop" {
        for rate in arg("--rates", "10000,50000").split(',').filter_map(|r| r.parse().ok()) {
            open_loop(&broker, rate, 2);
        }
    }
    if what == "eta" {
        eta(n);
    }
    if what == "memory_floor" {
        memory_floor(rtt_n);
    }
    if what == "amqp_floor" {
        amqp_floor(&broker, n);
    }
    if what == "redis_floor" {
        redis_floor(&broker, rtt_n);
    }
    if what == "beat" {
        beat(arg("--entries", "10000").parse().expect("--entries"), arg("--seconds", "10").parse().expect("--seconds"));
    }
    if what == "canvas" {
        canvas(
            &broker,
            arg("--chord", "10000").parse().expect("--chord"),
            arg("--chain", "1000").parse().expect("--chain"),
        );
    }
    if what == "ping" {
        ping(&broker, &arg("--node", "celery@localhost"), &arg("--worker", "celeriac"), rtt_n);
    }
    if what == "skew" {
        skew(true);
        skew(false);
    }
}
