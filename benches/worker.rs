//! The in-process path a task takes after its message is built (issue 6): the memory queue
//! (publish, fetch, settle on one thread), and dispatch through a running one-shard worker.
//!
//! `cargo bench --bench worker` (also run by `scripts/bench-protocol.sh`).
//! - `memory_queue/publish_fetch_ack`: 1,000 `add` messages published to `memory://`, fetched in
//!   batches of 64 and acked, all on the bench thread (the messages are cloned outside the timing).
//! - `dispatch/noop` and `dispatch/add_with_result`: 1,000 messages (built outside the timing,
//!   fresh ids each time) published to a running one-shard worker until it counts them
//!   processed: the shard's decode, lookup, argument extraction, call, result store and ack per
//!   task, plus the wake-up of the shard once per batch.

// criterion's macros generate the undocumented `main` and group functions.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use celeriac::protocol::{Headers, Properties, TaskMessage};
use celeriac::transport::MemoryBroker;
use celeriac::{App, TaskOptions};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BATCH: usize = 1000;

fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn noop() {}

fn memory_queue(c: &mut Criterion) {
    let msgs: Vec<TaskMessage> = (0..BATCH)
        .map(|i| {
            let mut h = Headers::new("proj.tasks.add", format!("7ac8a91d-40f1-4df9-9450-{i:012}"));
            h.argsrepr = Some("(4, 4)".into());
            TaskMessage::json(h, Properties::default(), "[[4, 4], {}, {}]")
        })
        .collect();
    let broker = MemoryBroker::new();
    let mut consumer = broker.consumer(&["celery".into()]);
    let mut g = c.benchmark_group("memory_queue");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("publish_fetch_ack", |b| {
        b.iter_batched(
            || msgs.clone(),
            |batch| {
                for m in batch {
                    broker.publish("celery", m);
                }
                let mut got = 0;
                while got < BATCH {
                    for d in consumer.try_fetch(64) {
                        got += 1;
                        let (msg, settle) = d.into_parts();
                        black_box(&msg.headers.id);
                        settle.ack();
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    assert_eq!(broker.unacked(), 0);
}

fn dispatch(c: &mut Criterion) {
    let app = App::builder("bench")
        .use_env(false)
        .broker("memory://")
        .result_backend("memory://")
        .configure(|c| c.worker_prefetch_multiplier = 64)
        .task("bench.add", ["x", "y"], add)
        .task_with("bench.noop", [], TaskOptions { ignore_result: Some(true), ..TaskOptions::default() }, noop)
        .build()
        .expect("bench app");
    let worker = app.worker().concurrency(1).start().expect("worker");
    let broker = app.client().broker().clone();
    let mut next_id = 0u64;
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, task) in [("noop", "bench.noop"), ("add_with_result", "bench.add")] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    // Fresh ids every time, so every result is a new entry in the store.
                    let batch: Vec<TaskMessage> = (0..BATCH)
                        .map(|i| {
                            next_id += 1;
                            let h = Headers::new(task, format!("00000000-0000-4000-8000-{next_id:012}"));
                            TaskMessage::json(h, Properties::default(), format!("[[{i}, {i}], {{}}, {{}}]"))
                        })
                        .collect();
                    let target = worker.stats().processed + BATCH as u64;
                    let route = celeriac::transport::Route::to_queue("celery");
                    let start = Instant::now();
                    for m in batch {
                        broker.publish(&route, m).expect("publish");
                    }
                    while worker.stats().processed < target {
                        std::hint::spin_loop();
                    }
                    took += start.elapsed();
                }
                took
            })
        });
    }
    g.finish();
    worker.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500)).sample_size(20);
    targets = memory_queue, dispatch
}
criterion_main!(benches);
