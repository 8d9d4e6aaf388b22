//! Decode and encode costs of the wire layer (issue 2): `add(4, 4)` JSON, a 3-step chain, a
//! message with 10 KB of args, and msgpack; plus simd-json against serde_json on the same
//! bodies, to decide whether simd-json earns its place (DESIGN.md §3).
//!
//! `cargo bench --bench protocol`. "decode" = envelope JSON → headers → accept check → body
//! parse with args/kwargs as borrowed raw slices (what a worker does per message).

// criterion's macros generate the undocumented `main` and group functions.
#![allow(missing_docs)]

use celeriac::protocol::{
    Accept, ContentType, DeliveryInfo, Embed, Envelope, Headers, Properties, Signature, TaskMessage,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Map, Value};

fn message(ct: ContentType, args: Vec<Value>, embed: Embed) -> TaskMessage {
    let mut h = Headers::new("proj.tasks.add", "7ac8a91d-40f1-4df9-9450-ecb61a3087bf");
    h.argsrepr = Some("(4, 4)".into());
    h.kwargsrepr = Some("{}".into());
    h.origin = Some("gen12925@vm".into());
    TaskMessage::encode(h, Properties::default(), ct, None, &args, &Map::new(), &embed).unwrap()
}

fn cases() -> Vec<(&'static str, TaskMessage)> {
    let chain = Embed {
        chain: Some(vec![
            Signature {
                options: json!({"task_id": "6b868e6d-0000-4000-8000-000000000000"}).as_object().unwrap().clone(),
                immutable: true,
                ..Signature::new("proj.tasks.add", vec![json!(100), json!(100)])
            },
            Signature {
                options: json!({"task_id": "6337c391-0000-4000-8000-000000000000"}).as_object().unwrap().clone(),
                ..Signature::new("proj.tasks.add", vec![json!(10)])
            },
        ]),
        ..Embed::default()
    };
    let big: Vec<Value> = vec![Value::from((0..1400).map(|i| json!(i * 7)).collect::<Vec<_>>())];
    vec![
        ("add_json", message(ContentType::Json, vec![json!(4), json!(4)], Embed::default())),
        ("chain3_json", message(ContentType::Json, vec![json!(1), json!(2)], chain)),
        ("args10k_json", message(ContentType::Json, big, Embed::default())),
        ("add_msgpack", message(ContentType::MsgPack, vec![json!(4), json!(4)], Embed::default())),
    ]
}

fn bench(c: &mut Criterion) {
    let accept = Accept::from_names(&["json", "msgpack"]).unwrap();
    let info = DeliveryInfo { exchange: String::new(), routing_key: "celery".into(), redelivered: false };
    let mut g = c.benchmark_group("decode");
    for (name, msg) in cases() {
        let wire = Envelope::from_task(&msg, info.clone(), "89ac4ab5-ecad-40f9-8031-d086dc564158".into()).encode();
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut m = Envelope::<Headers>::decode(black_box(&wire)).unwrap().into_task().unwrap();
                let body = m.decode_body(&accept).unwrap();
                let parsed = body.parse().unwrap();
                black_box(parsed.args.len());
            })
        });
        g.bench_function(format!("{name}/body_only"), |b| {
            let mut m = msg.clone();
            b.iter(|| {
                let body = m.decode_body(&accept).unwrap();
                black_box(body.parse().unwrap().args.len());
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("encode");
    for (name, msg) in cases() {
        let ct = ContentType::from_name(&msg.content_type).unwrap();
        let mut m = msg.clone();
        let body = m.decode_body(&accept).unwrap();
        let parsed = body.parse().unwrap();
        let (args, kwargs, embed) = (parsed.args_value(), parsed.kwargs_value(), parsed.embed.clone());
        g.bench_function(name, |b| {
            b.iter(|| {
                let m =
                    TaskMessage::encode(msg.headers.clone(), msg.properties.clone(), ct, None, &args, &kwargs, &embed)
                        .unwrap();
                black_box(Envelope::from_task(&m, info.clone(), "89ac4ab5-ecad-40f9-8031-d086dc564158".into()).encode())
            })
        });
    }
    g.finish();

    // simd-json vs serde_json on the same JSON bodies (owned values, both sides).
    let mut g = c.benchmark_group("json_parser");
    for (name, msg) in cases().into_iter().filter(|(n, _)| n.ends_with("json")) {
        let body = msg.body.to_vec();
        g.bench_function(format!("{name}/serde_json"), |b| {
            b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&body)).unwrap()))
        });
        g.bench_function(format!("{name}/simd_json"), |b| {
            b.iter(|| {
                let mut buf = body.clone();
                black_box(simd_json::to_owned_value(black_box(&mut buf)).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
