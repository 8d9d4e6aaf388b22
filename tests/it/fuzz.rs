//! Decoders never panic (issue 2): random bytes and mutated fixture bytes through every decoder.

use celeriac::protocol::{Accept, Compression, ContentType, Envelope, Event, Headers, ResultMeta};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn fixture_bytes() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/celery-5.7");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("manifest.json"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.sort();
    out
}

/// Runs every decoder over `bytes`; only errors are allowed, never a panic.
fn decode_everything(bytes: &[u8]) {
    let accept = Accept::from_names(&["json", "msgpack", "yaml", "pickle"]).unwrap();
    if let Ok(env) = Envelope::<Headers>::decode(bytes) {
        if let Ok(mut msg) = env.into_task() {
            if let Ok(body) = msg.decode_body(&accept) {
                if let Ok(b) = body.parse() {
                    let _ = (b.args_value(), b.kwargs_value());
                }
            }
        }
    }
    if let Ok(env) = Envelope::<Map<String, Value>>::decode(bytes) {
        if let Ok(body) = env.body() {
            if let Ok(v) = ContentType::Json.decode(&body) {
                let _ = Event::decode_batch(&v);
            }
        }
    }
    let _ = serde_json::from_slice::<ResultMeta>(bytes);
    for ct in [ContentType::Json, ContentType::MsgPack, ContentType::Yaml, ContentType::Pickle, ContentType::Text] {
        let _ = ct.decode(bytes);
    }
    for c in Compression::ALL {
        let _ = c.decompress(bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(which in 0usize..64, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let all = fixture_bytes();
        let mut bytes = all[which % all.len()].clone();
        for (pos, val) in flips {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        decode_everything(&bytes);
        let n = cut % (bytes.len() + 1);
        decode_everything(&bytes[..n]);
    }

    #[test]
    fn task_bodies_with_mutated_payloads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), ct in 0usize..4, comp in 0usize..6) {
        let cts = [ContentType::Json, ContentType::MsgPack, ContentType::Yaml, ContentType::Pickle];
        let mut msg = celeriac::protocol::TaskMessage::json(Headers::new("t", "i"), Default::default(), body);
        msg.content_type = cts[ct].mime().to_owned();
        if comp < 5 {
            msg.headers.compression = Some(Compression::ALL[comp].mime().to_owned());
        }
        let accept = Accept::from_names(&["json", "msgpack", "yaml", "pickle"]).unwrap();
        if let Ok(b) = msg.decode_body(&accept) {
            let _ = b.parse().map(|p| p.args_value());
        }
    }
}
