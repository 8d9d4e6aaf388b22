//! Remote control from the Rust client (issue 18), stamped over every transport:
//! `Client::inspect()` and `Client::control()` against a running worker, replies typed and
//! collected from the caller's own reply queue; and `-c` as Celery means it, the most task
//! bodies that run at once, apart from the shard count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac::{App, State};

use crate::semantics::Env;

const T: Duration = Duration::from_secs(10);

/// `env.base(name)` with a broadcast domain of its own: remote control reaches every worker on
/// a broker, and on the shared rabbitmq-server other tests' workers run meanwhile, so the AMQP
/// flavour gets a virtual host of its own (Redis and memory:// are per test already).
fn alone(env: &Env, name: &str) -> celeriac::AppBuilder {
    let b = env.base(name);
    if !matches!(env, Env::Amqp(..)) {
        return b;
    }
    let vhost = format!("ctl-{}", uuid::Uuid::new_v4().simple());
    crate::support::rabbit().ctl(&["add_vhost", &vhost]);
    crate::support::rabbit().ctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    b.broker(&format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", crate::support::rabbit().port))
}

fn the_client_inspects_and_controls_a_worker(env: &Env) {
    let app = alone(env, "ctl").build().unwrap();
    let w = app.worker().concurrency(2).shards(1).hostname("ctl@%h").start().unwrap();
    let node = w.hostname().to_owned();
    let client = app.client();

    let pongs = client.inspect().ping().unwrap();
    assert_eq!(pongs.len(), 1, "{pongs:?}");
    assert_eq!((pongs[0].node.as_str(), pongs[0].value.as_str()), (node.as_str(), "pong"));
    assert!(pongs[0].after < Duration::from_secs(1), "{pongs:?}");
    // A node nobody runs: no reply, and the wait ends at the timeout.
    let t0 = Instant::now();
    assert!(client
        .inspect()
        .destination(["nobody@nowhere"])
        .timeout(Duration::from_millis(300))
        .ping()
        .unwrap()
        .is_empty());
    assert!(t0.elapsed() < Duration::from_secs(2));
    // With the node named, the wait ends at its reply.
    let t0 = Instant::now();
    assert_eq!(client.inspect().destination([node.as_str()]).timeout(T).ping().unwrap().len(), 1);
    assert!(t0.elapsed() < Duration::from_secs(5));

    assert_eq!(app.send_task("t.add", (2, 3)).unwrap().get::<i64>(T).unwrap(), 5);
    let registered = client.inspect().limit(1).registered().unwrap();
    assert!(registered[0].value.iter().any(|n| n == "t.add"), "{registered:?}");
    let stats = client.inspect().limit(1).stats().unwrap();
    assert_eq!(stats[0].value.total.get("t.add"), Some(&1), "{stats:?}");
    assert_eq!(stats[0].value.pid, std::process::id());
    assert_eq!(stats[0].value.pool["max-concurrency"], 2, "{stats:?}");

    let long = app.send_task("t.sleep", (5_000,)).unwrap();
    let deadline = Instant::now() + T;
    let running = loop {
        let active = client.inspect().limit(1).active().unwrap();
        if let Some(t) = active[0].value.iter().find(|t| t.id == long.id()) {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "never active: {active:?}");
    };
    assert_eq!((running.name.as_str(), running.hostname.as_str()), ("t.sleep", node.as_str()));
    assert!(running.time_start.is_some(), "{running:?}");
    let where_ = client.inspect().limit(1).query_task(&[long.id()]).unwrap();
    assert_eq!(where_[0].value[long.id()].0, "active", "{where_:?}");

    let set = client.control().limit(1).rate_limit("t.add", "100/s").unwrap();
    assert_eq!(set[0].value, Ok("new rate limit set successfully".to_owned()), "{set:?}");
    let unknown = client.control().limit(1).rate_limit("t.nope", "1/s").unwrap();
    assert!(unknown[0].value.is_err(), "{unknown:?}");
    let grow = client.control().limit(1).command("pool_grow", serde_json::json!({"n": 1})).unwrap();
    assert!(grow[0].value.as_ref().is_err_and(|e| e.contains("pool_grow")), "{grow:?}");

    // Two slots: a second body runs beside it, a third waits prefetched and is `reserved`.
    let (second, third) = (app.send_task("t.sleep", (5_000,)).unwrap(), app.send_task("t.sleep", (5_000,)).unwrap());
    let deadline = Instant::now() + T;
    loop {
        let reserved = client.inspect().limit(1).reserved().unwrap();
        if reserved[0].value.iter().any(|t| t.id == third.id()) {
            assert!(reserved[0].value.iter().all(|t| t.name == "t.sleep" && t.time_start.is_none()), "{reserved:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never reserved: {reserved:?}");
    }
    let where_ = client.inspect().limit(1).query_task(&[third.id()]).unwrap();
    assert_eq!(where_[0].value[third.id()].0, "reserved", "{where_:?}");
    client.control().limit(1).revoke(&[second.id(), third.id()], true, None).unwrap();
    for r in [&second, &third] {
        let err = r.get::<u64>(T).unwrap_err();
        assert!(matches!(&err, celeriac::Error::TaskFailed(f) if f.state == State::Revoked), "{err:?}");
    }

    let revoked = client.control().limit(1).revoke(&[long.id()], true, None).unwrap();
    assert!(revoked[0].value.as_ref().is_ok_and(|t| t.contains(long.id())), "{revoked:?}");
    let err = long.get::<u64>(T).unwrap_err();
    assert!(matches!(&err, celeriac::Error::TaskFailed(f) if f.state == State::Revoked), "{err:?}");
    let ids = client.inspect().limit(1).revoked().unwrap();
    assert!(ids[0].value.iter().any(|i| i == long.id()), "{ids:?}");
    w.shutdown();
}

stamp!(the_client_inspects_and_controls_a_worker, consumers_are_added_and_cancelled_at_run_time);

/// Mingle: a worker that starts takes in the ids its running peers hold revoked (so a task
/// revoked before it came up is not run by it); `--without-mingle` skips the greeting.
fn mingle_takes_in_the_peers_revoked_ids(env: &Env) {
    let app = alone(env, "mingle").build().unwrap();
    let first = app.worker().concurrency(1).hostname("m1@%h").start().unwrap();
    let id = format!("revoked-before-{}", uuid::Uuid::new_v4());
    app.client().control().limit(1).revoke(&[id.as_str()], false, None).unwrap();
    assert!(first.revoked().contains(&id));
    let second = app.worker().concurrency(1).hostname("m2@%h").start().unwrap();
    assert!(second.revoked().contains(&id), "m2 did not sync with m1");
    let alone = app.worker().concurrency(1).hostname("m3@%h").mingle(false).start().unwrap();
    assert!(!alone.revoked().contains(&id));
    // The task, sent now, is dropped as revoked wherever it lands.
    let r =
        app.send_task_with("t.add", (1, 1), Default::default(), &celeriac::SendOptions::new().task_id(&id)).unwrap();
    alone.shutdown();
    let err = r.get::<i64>(T).unwrap_err();
    assert!(matches!(&err, celeriac::Error::TaskFailed(f) if f.state == State::Revoked), "{err:?}");
    first.shutdown();
    second.shutdown();
}

#[test]
fn mingle_on_redis() {
    mingle_takes_in_the_peers_revoked_ids(&Env::redis());
}

#[test]
fn mingle_on_rabbitmq() {
    mingle_takes_in_the_peers_revoked_ids(&Env::amqp());
}

/// Gossip: each worker follows the others' worker events (a peer that stops leaves the list; one
/// without gossip is seen but sees nobody), and an `election` makes the fleet send its task once.
fn gossip_follows_the_peers_and_elects_one(env: &Env) {
    let app = alone(env, "gossip").build().unwrap();
    let w1 = app.worker().concurrency(1).hostname("g1@%h").start().unwrap();
    let w2 = app.worker().concurrency(1).hostname("g2@%h").start().unwrap();
    let deaf = app.worker().concurrency(1).hostname("g3@%h").gossip(false).start().unwrap();
    let (n1, n2, n3) = (w1.hostname().to_owned(), w2.hostname().to_owned(), deaf.hostname().to_owned());
    let deadline = Instant::now() + T;
    while !(w1.peers().contains(&n2) && w1.peers().contains(&n3) && w2.peers().contains(&n1)) {
        assert!(Instant::now() < deadline, "peers never seen: {:?} {:?}", w1.peers(), w2.peers());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!w1.peers().contains(&n1), "a worker is not its own peer");
    assert!(deaf.peers().is_empty());
    deaf.shutdown();
    let deadline = Instant::now() + T;
    while w1.peers().contains(&n3) {
        assert!(Instant::now() < deadline, "worker-offline not seen");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Both stand; one wins and sends the task, once.
    let client = app.client();
    let queue = format!("{}.elected", env.queue());
    let action = celeriac::Signature::new("t.add", vec![2.into(), 3.into()]).set("queue", &queue);
    let id = uuid::Uuid::new_v4().to_string();
    client.control().election(&id, "task", Some(&action)).unwrap();
    let deadline = Instant::now() + T;
    while client.broker().queue_len(&queue).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "nobody won the election");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(client.broker().queue_len(&queue).unwrap(), 1, "the elected task was sent more than once");
    client.broker().purge(&queue).unwrap();
    w1.shutdown();
    w2.shutdown();
}

#[test]
fn gossip_on_redis() {
    gossip_follows_the_peers_and_elects_one(&Env::redis());
}

#[test]
fn gossip_on_rabbitmq() {
    gossip_follows_the_peers_and_elects_one(&Env::amqp());
}

/// An async task that notes how many bodies run at once.
fn counting_app(name: &str) -> (celeriac::AppBuilder, Arc<AtomicUsize>) {
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let m = most.clone();
    let builder = App::builder(name).use_env(false).broker("memory://").result_backend("memory://").task(
        "c.wait",
        ["ms"],
        move |ms: u64| {
            let (now, most) = (now.clone(), m.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                celeriac::rt::sleep(Duration::from_millis(ms)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }
        },
    );
    (builder, most)
}

fn run_waits(app: &App, n: usize) {
    let rs: Vec<_> = (0..n).map(|_| app.send_task("c.wait", (60,)).unwrap()).collect();
    for r in rs {
        r.get::<()>(T).unwrap();
    }
}

#[test]
fn concurrency_is_the_most_bodies_at_once_and_shards_are_apart() {
    // -c 1: one body at a time, on one shard.
    let (b, most) = counting_app("c1");
    let app = b.build().unwrap();
    let wb = app.worker().concurrency(1);
    assert_eq!(wb.shard_count(), 1);
    let w = wb.start().unwrap();
    run_waits(&app, 6);
    assert_eq!(most.load(Ordering::SeqCst), 1);
    w.shutdown();

    // -c 3 on one shard: three async bodies interleave there, never a fourth.
    let (b, most) = counting_app("c3");
    let app = b.build().unwrap();
    let w = app.worker().concurrency(3).shards(1).start().unwrap();
    run_waits(&app, 12);
    assert_eq!(most.load(Ordering::SeqCst), 3);
    w.shutdown();

    // -c 1000 does not start 1000 shards.
    let (b, _) = counting_app("c1000");
    let app = b.build().unwrap();
    assert!(app.worker().concurrency(1000).shard_count() <= celeriac::rt::cpus().len());

    // More shards than bodies cannot work, and says so.
    let err = app.worker().concurrency(1).shards(2).start().err().expect("refused");
    assert!(err.to_string().contains("--shards") && err.to_string().contains("-c 2"), "{err}");
}

/// `add_consumer` / `cancel_consumer` at run time: a queue added is consumed on every shard from
/// then on (and listed by `active_queues`), one cancelled is left alone until added again, and
/// nothing is left in either queue at the end.
fn consumers_are_added_and_cancelled_at_run_time(env: &Env) {
    let app = alone(env, "cons").build().unwrap();
    let w = app.worker().concurrency(2).shards(2).hostname("cons@%h").start().unwrap();
    let client = app.client();
    let (home, extra) = (env.queue().to_owned(), format!("{}.extra", env.queue()));
    let names = |c: &celeriac::Client| -> Vec<String> {
        let q = c.inspect().limit(1).active_queues().unwrap();
        q[0].value.iter().map(|q| q.name.clone()).collect()
    };
    assert_eq!(names(&client), [home.as_str()]);

    let to = |q: &str| celeriac::SendOptions::new().queue(q);
    let waiting = client.send_task_with("t.add", (2, 3), Default::default(), &to(&extra)).unwrap();
    assert!(waiting.get::<i64>(Duration::from_millis(700)).is_err(), "ran before its queue was consumed");
    let added = client.control().limit(1).add_consumer(&extra).unwrap();
    assert_eq!(added[0].value, Ok(format!("add consumer {extra}")), "{added:?}");
    assert_eq!(waiting.get::<i64>(T).unwrap(), 5);
    assert_eq!(names(&client), [home.as_str(), extra.as_str()]);
    // Adding it twice changes nothing and is answered the same.
    assert!(client.control().limit(1).add_consumer(&extra).unwrap()[0].value.is_ok());
    assert_eq!(names(&client).len(), 2);

    let cancelled = client.control().limit(1).cancel_consumer(&home).unwrap();
    assert_eq!(cancelled[0].value, Ok(format!("no longer consuming from {home}")), "{cancelled:?}");
    assert_eq!(names(&client), [extra.as_str()]);
    // A fetch already waiting on the old list (Redis blocks for 0.25 s) ends first.
    std::thread::sleep(Duration::from_millis(600));
    let left = client.send_task_with("t.add", (1, 1), Default::default(), &to(&home)).unwrap();
    let still = client.send_task_with("t.add", (4, 4), Default::default(), &to(&extra)).unwrap();
    assert_eq!(still.get::<i64>(T).unwrap(), 8);
    assert!(left.get::<i64>(Duration::from_millis(700)).is_err(), "ran from a cancelled queue");
    assert_eq!(client.broker().queue_len(&home).unwrap(), 1);

    client.control().limit(1).add_consumer(&home).unwrap();
    assert_eq!(left.get::<i64>(T).unwrap(), 2);
    let stats = w.shutdown();
    assert_eq!(stats.processed, 3, "{stats:?}");
    for q in [&home, &extra] {
        assert_eq!(client.broker().queue_len(q).unwrap(), 0, "left in {q}");
    }
}
