//! Quickstart: a worker and a client in one process on the embedded memory broker.
//!
//! `cargo run --release --example quickstart` runs the Celery tutorial's tasks and its canvas
//! ("Next Steps": a chain, a group, a chord), then a burst of 100,000 tasks (throughput) and
//! 10,000 sequential round trips (latency).

use std::time::{Duration, Instant};

use celeriac::{chord, group, App, TaskRef};

fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn mul(x: i64, y: i64) -> i64 {
    x * y
}

fn xsum(numbers: Vec<i64>) -> i64 {
    numbers.iter().sum()
}

const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.add");
const MUL: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.mul");
const XSUM: TaskRef<(Vec<i64>,), i64> = TaskRef::new("proj.tasks.xsum");

fn main() -> Result<(), celeriac::Error> {
    let app = App::builder("proj")
        .broker("memory://")
        .result_backend("memory://")
        .task("proj.tasks.add", ["x", "y"], add)
        .task("proj.tasks.mul", ["x", "y"], mul)
        .task("proj.tasks.xsum", ["numbers"], xsum)
        .build()?;
    let worker = app.worker().prefetch_multiplier(64).start()?;
    let client = app.client();
    let t = Duration::from_secs(10);

    println!("add(4, 4)        = {}", ADD.delay(&client, (4, 4))?.get(t)?);
    println!("mul(8, 8)        = {}", app.send_task("proj.tasks.mul", (8, 8))?.get::<i64>(t)?);
    println!(
        "xsum([1..=100])  = {}",
        app.send_task("proj.tasks.xsum", ((1..=100).collect::<Vec<i64>>(),))?.get::<i64>(t)?
    );

    // Canvas, as in Celery's "Next Steps": (add.s(4, 4) | mul.s(8))(), a group, a chord.
    let flow = ADD.s((4, 4))? | MUL.partial((8,))?;
    println!("(add(4, 4) | mul(8))           = {}", client.send_signature(&flow)?.get::<i64>(t)?);
    let g = group((0..10).map(|i| ADD.s((i, i))).collect::<Result<_, _>>()?);
    println!("group(add(i, i) for i in 0..10) = {:?}", client.send_signature(&g)?.get::<Vec<i64>>(t)?);
    let c = chord((0..100).map(|i| ADD.s((i, i))).collect::<Result<_, _>>()?, XSUM.partial(())?);
    println!("chord(add(i, i) for i in 0..100)(xsum) = {}", client.send_signature(&c)?.get::<i64>(t)?);

    // Burst: publish 100,000 tasks, then wait for every result.
    let n = 100_000;
    let start = Instant::now();
    let results: Vec<_> = (0..n).map(|i| ADD.delay(&client, (i, i))).collect::<Result<_, _>>()?;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.get(t)?, 2 * i as i64);
    }
    let burst = start.elapsed();

    // Round trips: one task at a time, delay() then get().
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for i in 0..10_000 {
        let s = Instant::now();
        ADD.delay(&client, (i, 1))?.get(t)?;
        hist.record(s.elapsed().as_nanos() as u64).expect("in range");
    }
    let stats = worker.stats();
    worker.shutdown();

    println!(
        "burst: {n} tasks in {:.3}s = {:.0} tasks/s on {} shards; round trip p50 {:.1} µs, p99 {:.1} µs (memory://, results on)",
        burst.as_secs_f64(),
        n as f64 / burst.as_secs_f64(),
        stats.per_shard.len(),
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
    Ok(())
}
