//! Golden fixtures captured from Python Celery 5.7 (issue 2): every file decodes, and decodes to
//! what Python itself read from it; what celeriac writes, real kombu/celery read back.

use std::path::{Path, PathBuf};
use std::process::Command;

use celeriac::protocol::{
    Accept, Compression, ContentType, ControlRequest, DeliveryInfo, Embed, Envelope, Event, ExceptionInfo, Headers,
    Properties, ResultMeta, Signature, State, TaskMessage,
};
use serde_json::{json, Map, Value};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/celery-5.7")
}

fn manifest() -> Vec<Value> {
    let m: Value = serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["celery"], "5.7.0");
    m["fixtures"].as_array().unwrap().clone()
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).unwrap()
}

fn accept_all() -> Accept {
    Accept::from_names(&["json", "msgpack", "yaml", "pickle"]).unwrap()
}

#[test]
fn every_task_fixture_decodes_to_what_python_decoded() {
    let fixtures: Vec<Value> = manifest().into_iter().filter(|f| f["kind"] == "task").collect();
    assert!(fixtures.len() >= 24, "{} task fixtures", fixtures.len());
    for f in fixtures {
        let file = f["file"].as_str().unwrap();
        let raw = read(file);
        let env = Envelope::<Headers>::decode(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        let v1 = f["headers"].get("task").is_none();
        if !v1 {
            // lossless: re-encoding the envelope gives the same JSON value (v1's empty headers
            // come back as v2 defaults: celeriac never writes v1)
            let again: Value = serde_json::from_slice(&env.encode()).unwrap();
            assert_eq!(again, serde_json::from_slice::<Value>(&raw).unwrap(), "{file}: envelope round trip");
        }
        let mut msg = env.into_task().unwrap();
        let body = msg.decode_body(&accept_all()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let parsed = body.parse().unwrap_or_else(|e| panic!("{file}: {e}"));
        let py = &f["body"];
        let (args, kwargs) = if v1 { (&py["args"], &py["kwargs"]) } else { (&py[0], &py[1]) };
        assert_eq!(&Value::from(parsed.args_value()), args, "{file}: args");
        assert_eq!(&Value::Object(parsed.kwargs_value()), kwargs, "{file}: kwargs");
        if v1 {
            assert_eq!(msg.headers.task, py["task"], "{file}: v1 task name");
            assert_eq!(msg.headers.id, py["id"], "{file}: v1 id");
            assert_eq!(msg.headers.eta.as_deref(), py["eta"].as_str(), "{file}: v1 eta");
        } else {
            let embed = serde_json::to_value(&parsed.embed).unwrap();
            let mut py_embed = py[2].clone();
            if py_embed.is_null() {
                py_embed = serde_json::to_value(Embed::default()).unwrap();
            }
            assert_eq!(embed, py_embed, "{file}: embed");
            assert_eq!(serde_json::to_value(&msg.headers).unwrap(), f["headers"], "{file}: headers");
        }
    }
}

#[test]
fn captured_options_land_in_the_right_fields() {
    let mut m = Envelope::<Headers>::decode(&read("task_options.json")).unwrap().into_task().unwrap();
    assert_eq!(m.headers.time_limits(), (Some(30.0), Some(20.0)), "[hard, soft]");
    assert_eq!(m.headers.shadow.as_deref(), Some("shadowname"));
    assert_eq!(m.headers.extra["x-custom"], "v");
    assert_eq!(m.properties.priority, 5);
    assert_eq!(m.properties.expiration.as_deref(), Some("60000"));
    let body = m.decode_body(&Accept::default()).unwrap();
    let b = body.parse().unwrap();
    assert_eq!(b.embed.callbacks.as_ref().unwrap()[0].task, "app2.mul");
    let errback = &b.embed.errbacks.as_ref().unwrap()[0];
    assert!(errback.immutable);
    assert_eq!(errback.options["queue"], "errq");

    let chain = Envelope::<Headers>::decode(&read("task_chain.json")).unwrap().into_task().unwrap();
    let mut chain = chain;
    let body = chain.decode_body(&Accept::default()).unwrap();
    let steps = body.parse().unwrap().embed.chain.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1].args, vec![json!(10)], "next step is last");
    assert!(steps[0].immutable && steps[0].task_id().is_some());

    let mut member = Envelope::<Headers>::decode(&read("task_chord.0.json")).unwrap().into_task().unwrap();
    assert!(member.headers.group.is_some());
    assert_eq!(member.headers.group_index, Some(0));
    let body = member.decode_body(&Accept::default()).unwrap();
    let chord_body: Signature = body.parse().unwrap().embed.chord.unwrap();
    assert_eq!(chord_body.task, "app2.tsum");
    assert!(chord_body.options.contains_key("group_id"));

    let markers = Envelope::<Headers>::decode(&read("task_json_markers.json")).unwrap().into_task().unwrap();
    let mut markers = markers;
    let body = markers.decode_body(&Accept::default()).unwrap();
    let args = body.parse().unwrap().args_value();
    let when: celeriac::protocol::json::PyDateTime = serde_json::from_value(args[0].clone()).unwrap();
    assert_eq!(when.0.timestamp(), 1704164645);
    let list: (
        celeriac::protocol::json::PyDecimal,
        celeriac::protocol::json::PyUuid,
        celeriac::protocol::json::PyBytes,
        celeriac::protocol::json::PyBytes,
    ) = serde_json::from_value(args[1].clone()).unwrap();
    assert_eq!(list.0 .0, "1.10");
    assert_eq!(list.1 .0.simple().to_string(), "12345678123456781234567812345678");
    assert_eq!(list.2 .0, b"raw");
    assert_eq!(list.3 .0, [0xff, 0x00]);
}

#[test]
fn every_result_fixture_reads_and_writes_back_the_same() {
    let fixtures: Vec<Value> = manifest().into_iter().filter(|f| f["kind"] == "result").collect();
    assert_eq!(fixtures.len(), 6);
    for f in fixtures {
        let file = f["file"].as_str().unwrap();
        let raw: Value = serde_json::from_slice(&read(file)).unwrap();
        let meta: ResultMeta = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.status.as_str(), f["status"], "{file}");
        assert_eq!(serde_json::to_value(&meta).unwrap(), raw, "{file}: lossless");
        if let Some(exc) = meta.exception() {
            assert_eq!(format!("{}", exc.repr()), f["exception"].as_str().unwrap(), "{file}: repr as Python raises it");
        } else {
            assert_eq!(meta.result, f["result"], "{file}");
        }
    }
    let m: ResultMeta = serde_json::from_slice(&read("result_custom_state.json")).unwrap();
    assert_eq!(m.status, State::Custom("PROGRESS".into()));
    assert_eq!(m.result, json!({"current": 3, "total": 10}));
    let m: ResultMeta = serde_json::from_slice(&read("result_extended.json")).unwrap();
    assert_eq!(
        (m.name.as_deref(), m.worker.as_deref(), m.queue.as_deref()),
        (Some("app2.add"), Some("w1@digest"), Some("celery"))
    );
    let m: ResultMeta = serde_json::from_slice(&read("result_failure.json")).unwrap();
    assert!(m.traceback.unwrap().contains("MyError: ('bad thing', 42)"));
}

#[test]
fn events_and_pidbox_fixtures_decode() {
    for f in manifest().into_iter().filter(|f| f["kind"] == "event") {
        let file = f["file"].as_str().unwrap();
        let env = Envelope::<Map<String, Value>>::decode(&read(file)).unwrap();
        let body: Value = ContentType::Json.decode(&env.body().unwrap()).unwrap();
        let events = Event::decode_batch(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        let expected = f["body"].as_array().cloned().unwrap_or_else(|| vec![f["body"].clone()]);
        assert_eq!(events.len(), expected.len(), "{file}");
        for (e, py) in events.iter().zip(&expected) {
            assert_eq!(e.kind, py["type"]);
            assert_eq!(serde_json::to_value(e).unwrap(), *py, "{file}: lossless");
        }
        if file == "event_task_multi.json" {
            assert_eq!(env.delivery_info().routing_key, "task.multi");
        }
    }
    let env = Envelope::<Map<String, Value>>::decode(&read("pidbox_ping_request.json")).unwrap();
    let req: ControlRequest = serde_json::from_slice(&env.body().unwrap()).unwrap();
    assert_eq!(req.method, "ping");
    assert!(req.is_for("w1@digest") && req.ticket.is_some());
    assert_eq!(req.reply_to.unwrap().exchange, "reply.celery.pidbox");
    assert!(env.headers().contains_key("clock"));
    let env = Envelope::<Map<String, Value>>::decode(&read("pidbox_revoke_request.json")).unwrap();
    let req: ControlRequest = serde_json::from_slice(&env.body().unwrap()).unwrap();
    assert_eq!((req.method.as_str(), req.ticket.is_none(), req.is_for("anyone")), ("revoke", true, true));
    let env = Envelope::<Map<String, Value>>::decode(&read("pidbox_ping_reply.json")).unwrap();
    let reply: celeriac::protocol::ControlReply = serde_json::from_slice(&env.body().unwrap()).unwrap();
    assert_eq!(reply["ok"], "pong");
    assert!(env.headers().contains_key("ticket"));
}

/// The venv with real Celery 5.7 made by scripts/venv.sh. Missing is a failure, not a skip.
pub(crate) fn python() -> PathBuf {
    let p = std::env::var_os("CELERIAC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(p.exists(), "{} is missing: run scripts/test.sh (it creates the venv with celery==5.7.0)", p.display());
    p
}

#[test]
fn python_kombu_decodes_what_celeriac_encodes() {
    let tmp = std::env::temp_dir().join(format!("celeriac-rt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let args = vec![json!(2), json!("two"), json!({"__type__": "bytes", "__value__": "raw"}), json!([1.5, null, true])];
    let mut kwargs = Map::new();
    kwargs.insert("k".into(), json!({"nested": ["é", 3]}));
    let embed = Embed { callbacks: Some(vec![Signature::new("app2.mul", vec![json!(10)])]), ..Embed::default() };
    let mut cases = Vec::new();
    for ct in [ContentType::Json, ContentType::MsgPack, ContentType::Yaml, ContentType::Pickle] {
        for comp in [
            None,
            Some(Compression::Zlib),
            Some(Compression::Bzip2),
            Some(Compression::Lzma),
            Some(Compression::Zstd),
            Some(Compression::Brotli),
        ] {
            let mut h = Headers::new("app2.add", format!("rt-{ct:?}-{comp:?}"));
            h.extra.insert("x-custom".into(), json!("v"));
            let msg = TaskMessage::encode(h, Properties::default(), ct, comp, &args, &kwargs, &embed).unwrap();
            let env = Envelope::from_task(
                &msg,
                DeliveryInfo { exchange: String::new(), routing_key: "celery".into(), redelivered: false },
                "tag".into(),
            );
            let name = format!("{ct:?}-{comp:?}.task.json");
            std::fs::write(tmp.join(&name), env.encode()).unwrap();
            cases.push((name, ct));
        }
    }
    let mut ok = ResultMeta::new("r1", State::Success, json!({"a": [1, 2]}));
    ok.parent_id = Some("p".into());
    std::fs::write(tmp.join("ok.result.json"), serde_json::to_vec(&ok).unwrap()).unwrap();
    let mut failed =
        ResultMeta::new("r2", State::Failure, ExceptionInfo::new("builtins", "ValueError", "boom").to_value());
    failed.traceback = Some("Traceback (most recent call last):\nValueError: boom\n".into());
    std::fs::write(tmp.join("fail.result.json"), serde_json::to_vec(&failed).unwrap()).unwrap();
    let custom =
        ResultMeta::new("r3", State::Failure, ExceptionInfo::new("proj.errors", "QuotaExceeded", "over").to_value());
    std::fs::write(tmp.join("custom.result.json"), serde_json::to_vec(&custom).unwrap()).unwrap();

    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kombu_decode.py"))
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "kombu_decode.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let py: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, ct) in cases {
        let got = &py[&name];
        assert_eq!(got["body"][0], Value::from(args.clone()), "{name}: args as Python reads them");
        assert_eq!(got["body"][1], Value::Object(kwargs.clone()), "{name}: kwargs");
        assert_eq!(got["body"][2]["callbacks"][0]["task"], "app2.mul", "{name}: embed");
        assert_eq!(got["headers"]["x-custom"], "v");
        let _ = ct;
    }
    assert_eq!(py["ok.result.json"]["status"], "SUCCESS");
    assert_eq!(py["ok.result.json"]["result"], json!({"a": [1, 2]}));
    assert_eq!(py["fail.result.json"]["exception"]["type"], "ValueError");
    assert_eq!(py["fail.result.json"]["exception"]["str"], "boom");
    assert_eq!(py["custom.result.json"]["exception"]["type"], "QuotaExceeded", "Python synthesizes the class by name");
    std::fs::remove_dir_all(&tmp).unwrap();
}
