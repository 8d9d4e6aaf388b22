//! Canvas end to end (issue 17), one suite stamped over memory://, a real redis-server and the
//! shared rabbitmq-server (results in Redis): chains with partial and immutable steps, groups
//! and `GroupResult`, chords (nested, empty, failing, `group | task`, `chord | task`, a
//! 1,000-part header), chunks, map and starmap, a chain of 100 links, and what a failure in the
//! middle of a chain does to its last step.

use celeriac::canvas::{chunks, xmap, xstarmap};
use celeriac::{chain, chord, group, Applied, Error, Signature, TaskRef};
use serde_json::{json, Value};

use crate::semantics::Env;
use crate::support::*;

const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("t.add");
const TSUM: TaskRef<(Vec<i64>,), i64> = TaskRef::new("c.tsum");
const COLLECT: TaskRef<(Vec<Value>,), Vec<Value>> = TaskRef::new("c.collect");
const FAIL: TaskRef<(String,), ()> = TaskRef::new("t.fail");

fn tsum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn collect(xs: Vec<Value>) -> Vec<Value> {
    xs
}

fn add(x: i64) -> Signature {
    ADD.partial((x,)).unwrap()
}

fn app(env: &Env, name: &str) -> celeriac::App {
    env.base(name).task("c.tsum", ["xs"], tsum).task("c.collect", ["xs"], collect).build().unwrap()
}

fn value(r: &Applied) -> Value {
    r.get_value(T, true).unwrap_or_else(|e| panic!("{}: {e}", r.id()))
}

fn chains_and_groups(env: &Env) {
    let app = app(env, "cg");
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();

    // The result prepended to each mutable step; `si` keeps its own.
    let flow = ADD.s((1, 2)).unwrap() | add(10) | ADD.si((100, 100)).unwrap() | add(1);
    let r = client.send_signature(&flow).unwrap();
    assert_eq!(value(&r), json!(201));
    let last = client.backend().get(r.id()).unwrap().unwrap();
    assert!(last.parent_id.is_some(), "a chain step knows its parent");

    // A group: results in order, saved and restored by id.
    let g = group((0..5).map(|i| ADD.s((i, i)).unwrap()).collect());
    let r = client.send_signature(&g).unwrap();
    assert_eq!(value(&r), json!([0, 2, 4, 6, 8]));
    let gr = r.group().unwrap();
    gr.save().unwrap();
    let back = client.restore_group(gr.id()).unwrap().expect("saved");
    assert_eq!(back.get::<i64>(T).unwrap(), vec![0, 2, 4, 6, 8]);
    assert_eq!(
        back.results().iter().map(Applied::id).collect::<Vec<_>>(),
        gr.results().iter().map(Applied::id).collect::<Vec<_>>()
    );

    // A chain into a group: every member gets the result; the chain's result is the group's.
    let r = client.send_signature(&(ADD.s((1, 1)).unwrap() | group(vec![add(10), add(20)]))).unwrap();
    assert_eq!(value(&r), json!([12, 22]));

    // A group's callbacks in a chain nested in a group.
    let nested = group(vec![chain(vec![ADD.s((1, 1)).unwrap(), add(1)]), ADD.s((5, 5)).unwrap()]);
    assert_eq!(value(&client.send_signature(&nested).unwrap()), json!([3, 10]));

    // A chain of 100 links.
    let mut long = ADD.s((0, 1)).unwrap();
    for _ in 1..100 {
        long = long | add(1);
    }
    assert_eq!(value(&client.send_signature(&long).unwrap()), json!(100));

    // A step failing in the middle: the last step fails with it, so nobody waits for ever.
    let broken = ADD.s((1, 1)).unwrap() | FAIL.partial(()).unwrap() | add(1);
    let r = client.send_signature(&broken).unwrap();
    match r.get_value(T, true) {
        Err(Error::TaskFailed(f)) => assert_eq!(f.exception.exc_type, "TypeError", "{f:?}"),
        other => panic!("the last step of a broken chain: {other:?}"),
    }
    w.shutdown();
}

fn chords(env: &Env) {
    let app = app(env, "ch");
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();

    // The body gets the header's results in header order.
    let header: Vec<Signature> = (0..10).map(|i| ADD.s((i, 100)).unwrap()).collect();
    let r = client.send_signature(&chord(header, COLLECT.partial(()).unwrap())).unwrap();
    assert_eq!(value(&r), json!((0..10).map(|i| i + 100).collect::<Vec<_>>()));

    // `group | task` is a chord; `chord | task` chains onto the body.
    let g = group(vec![ADD.s((1, 1)).unwrap(), ADD.s((2, 2)).unwrap()]);
    assert_eq!(value(&client.send_signature(&(g.clone() | TSUM.partial(()).unwrap())).unwrap()), json!(6));
    let c = chord(vec![ADD.s((1, 1)).unwrap(), ADD.s((2, 2)).unwrap()], TSUM.partial(()).unwrap()) | add(1000);
    assert_eq!(value(&client.send_signature(&c).unwrap()), json!(1006));

    // A chord as a chain step: the parent's result goes to every header task, and the chain
    // goes on after the body.
    let flow = ADD.s((1, 1)).unwrap() | chord(vec![add(1), add(2)], TSUM.partial(()).unwrap()) | add(100);
    assert_eq!(value(&client.send_signature(&flow).unwrap()), json!(107));

    // A chord in a chord's header counts once, with its body's result.
    let inner = chord(vec![ADD.s((1, 1)).unwrap(), ADD.s((2, 2)).unwrap()], TSUM.partial(()).unwrap());
    let outer = chord(vec![inner, ADD.s((3, 3)).unwrap()], COLLECT.partial(()).unwrap());
    assert_eq!(value(&client.send_signature(&outer).unwrap()), json!([6, 6]));

    // An empty header calls the body at once with no results.
    assert_eq!(value(&client.send_signature(&chord(vec![], COLLECT.partial(()).unwrap())).unwrap()), json!([]));

    // A failed part fails the body with ChordError once every part is in, and calls its errbacks.
    let errback = Signature::new("t.whoami", vec![]).set("task_id", "chord-errback");
    let body = TSUM.partial(()).unwrap().link_error(errback);
    let failing = chord(vec![ADD.s((1, 1)).unwrap(), FAIL.s(("part".into(),)).unwrap()], body);
    let r = client.send_signature(&failing).unwrap();
    match r.get_value(T, true) {
        Err(Error::TaskFailed(f)) => {
            assert_eq!(
                (f.exception.exc_module.as_str(), f.exception.exc_type.as_str()),
                ("celery.exceptions", "ChordError")
            );
            let why = f.exception.message();
            assert!(why.starts_with("Dependency ") && why.ends_with("raised ValueError('part')"), "{why}");
        }
        other => panic!("a chord with a failed part: {other:?}"),
    }
    let seen = client.async_result("chord-errback").get::<Value>(T).unwrap();
    assert_eq!(seen[3], json!(r.id()), "the errback gets the body's id");

    // A part revoked before it runs counts as REVOKED: the body fails instead of waiting.
    let revoked_id = format!("revoked-part-{}", uuid::Uuid::new_v4());
    client.revoke(&revoked_id, false, None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let parts = vec![ADD.s((1, 1)).unwrap(), ADD.s((2, 2)).unwrap().set("task_id", &revoked_id)];
    let r = client.send_signature(&chord(parts, TSUM.partial(()).unwrap())).unwrap();
    match r.get_value(T, true) {
        Err(Error::TaskFailed(f)) => {
            assert_eq!(f.exception.exc_type, "ChordError");
            assert!(
                f.exception.message().contains(&revoked_id) && f.exception.message().contains("TaskRevokedError"),
                "{f:?}"
            );
        }
        other => panic!("a chord with a revoked part: {other:?}"),
    }

    // 1,000 parts.
    let header: Vec<Signature> = (0..1000).map(|i| ADD.s((i, 1)).unwrap()).collect();
    let r = client.send_signature(&chord(header, TSUM.partial(()).unwrap())).unwrap();
    assert_eq!(value(&r), json!((1..=1000).sum::<i64>()));
    w.shutdown();
}

fn chunks_map_and_starmap(env: &Env) {
    let app = app(env, "cm");
    let client = app.client();
    let w = app.worker().concurrency(2).start().unwrap();
    let pairs: Vec<Value> = (0..10).map(|i| json!([i, i])).collect();
    let add_sig = Signature::new("t.add", vec![]);
    let r = client.send_signature(&chunks(&add_sig, pairs.clone(), 3)).unwrap();
    assert_eq!(r.group().map(|g| g.len()), Some(4), "10 calls in parts of 3");
    assert_eq!(value(&r), json!([[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]));
    assert_eq!(
        value(&client.send_signature(&xstarmap(&add_sig, pairs)).unwrap()),
        json!([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
    );
    let tsum_sig = Signature::new("c.tsum", vec![]);
    assert_eq!(
        value(&client.send_signature(&xmap(&tsum_sig, vec![json!([1, 2]), json!([3])])).unwrap()),
        json!([3, 3])
    );
    // `celery.chunks` sent as a task (as a Python worker would get it) splits worker-side.
    let r = client.send_task("celery.chunks", (json!(add_sig), json!([[1, 1], [2, 2], [3, 3]]), 2)).unwrap();
    let tuple: Value = r.get(T).unwrap();
    let ids: Vec<String> = tuple[1].as_array().unwrap().iter().map(|t| t[0][0].as_str().unwrap().to_owned()).collect();
    let parts: Vec<Value> = ids.iter().map(|id| client.async_result(id.clone()).get(T).unwrap()).collect();
    assert_eq!(parts, vec![json!([2, 4]), json!([6])]);
    // `celery.chord_unlock` (what Celery sends for stores without chord counting): retried
    // until the header is ready, then the callback gets the results in order.
    let slow = client.send_task("t.sleep", (300,)).unwrap();
    let fast = client.send_task("t.add", (2, 3)).unwrap();
    let tuples = json!([[[slow.id(), null], null], [[fast.id(), null], null]]);
    let cb = Signature::new("c.collect", vec![]).set("task_id", format!("unlock-cb-{}", uuid::Uuid::new_v4()));
    let cb_id = cb.task_id().unwrap().to_owned();
    let unlock = json!({"interval": 0.1, "result": tuples});
    let unlock: serde_json::Map<String, Value> = serde_json::from_value(unlock).unwrap();
    client
        .send_task_with("celery.chord_unlock", ("g-unlock", json!(cb)), unlock, &celeriac::SendOptions::new())
        .unwrap();
    assert_eq!(client.async_result(cb_id).get::<Value>(T).unwrap(), json!([300, 5]));
    // A map over an unknown task fails as Celery's does.
    let r = client.send_signature(&xmap(&Signature::new("no.such", vec![]), vec![json!(1)])).unwrap();
    match r.get_value(T, true) {
        Err(Error::TaskFailed(f)) => assert_eq!(f.exception.exc_type, "NotRegistered"),
        other => panic!("{other:?}"),
    }
    w.shutdown();
}

stamp!(chains_and_groups, chords, chunks_map_and_starmap);
