//! Starting an executor thread: glommio's `make` + `run` on a thread of our own, registered
//! with the [`heartbeat`](super::heartbeat) before its first round (shards and the I/O thread
//! start here).

/// How long glommio lets a run of ready tasks go on before it polls I/O again.
pub(crate) const PREEMPT: std::time::Duration = std::time::Duration::from_millis(1);

/// Runs `main()` on a new glommio executor built from `builder`, on a new thread named `name`
/// (shards and the I/O thread start here). The thread registers with the [`heartbeat`] before
/// the executor's first round, so even a first round that glommio strands is rescued, and the
/// beat task is the first task spawned. The join handle yields `main`'s output, or why the
/// executor could not be built.
pub(crate) fn spawn_executor<G, F, T>(
    name: String,
    builder: glommio::LocalExecutorBuilder,
    main: G,
) -> std::io::Result<std::thread::JoinHandle<Result<T, String>>>
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        let ex = builder.make().map_err(|e| e.to_string())?;
        let beat = super::heartbeat::register();
        super::spawn::mark_executor();
        let main_beat = beat.clone();
        Ok(ex.run(async move {
            super::spawn_local(main_beat.task());
            let out = main().await;
            // Deregisters and releases the beat task's waker here, on the executor.
            drop(main_beat);
            out
        }))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

    #[test]
    fn ready_tasks_are_not_stranded_when_a_round_starts_preempted() {
        // A task queue with a 20 µs latency budget makes glommio's preemption timer fire before
        // some scheduling rounds begin; a receiver woken from another thread is then stranded in
        // a parked executor (glommio 0.9.0: without a heartbeat this hung in 3 of 6 runs here,
        // and with a timer-driven one, which is stranded the same way, in 3 of 6).
        let n = 300;
        let (tx, rx) = flume::unbounded::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let ex = super::spawn_executor(
            "stranding".into(),
            LocalExecutorBuilder::new(Placement::Unbound),
            move || async move {
                let tight = glommio::executor().create_task_queue(
                    Shares::default(),
                    Latency::Matters(Duration::from_micros(20)),
                    "tight",
                );
                let got = glommio::spawn_local_into(
                    async move {
                        let mut got = 0;
                        while got < n && rx.recv_async().await.is_ok() {
                            got += 1;
                        }
                        got
                    },
                    tight,
                )
                .expect("task queue")
                .await;
                done_tx.send(got).unwrap();
            },
        )
        .unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..n {
                tx.send(i).unwrap();
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let got = done_rx.recv_timeout(Duration::from_secs(30)).expect("the receiver was stranded");
        assert_eq!(got, n);
        sender.join().unwrap();
        ex.join().unwrap().unwrap();
    }

    #[test]
    fn an_executor_stranded_in_its_first_round_is_rescued() {
        // With a 10 µs preemption timer the first round here begins with the timer already
        // fired: glommio runs nothing and parks before any task of ours has run, so there is no
        // waker to call, only the heartbeat's signal (without it, 0 of 8 executors started, in
        // each of 3 runs; with it, 8 of 8).
        let starts: Vec<_> = (0..8)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel();
                let builder = LocalExecutorBuilder::new(Placement::Unbound).preempt_timer(Duration::from_micros(10));
                let ex = super::spawn_executor(format!("first-round-{i}"), builder, move || async move {
                    tx.send(()).unwrap();
                })
                .unwrap();
                (rx, ex)
            })
            .collect();
        for (rx, ex) in starts {
            rx.recv_timeout(Duration::from_secs(20)).expect("an executor never ran its first task");
            ex.join().unwrap().unwrap();
        }
    }
}
