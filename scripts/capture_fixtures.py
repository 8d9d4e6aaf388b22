"""Capture golden wire fixtures from real Python Celery 5.7 / kombu 5.7.

Run through scripts/capture-fixtures.sh (it makes the venv). Task, event and pidbox messages
are captured with kombu's filesystem transport, which writes the exact envelope the Redis
transport pushes (same virtual-transport code: base64 body, properties, delivery_info,
delivery_tag). Result metas are what the real backend encodes for each state.

Every fixture goes to tests/fixtures/celery-5.7/<name>.json; manifest.json lists each with what
Python itself decodes from it (args, kwargs, embed, headers, body), so the Rust tests compare
against Celery's own reading, not ours.
"""
import base64
import datetime
import decimal
import glob
import json
import os
import shutil
import sys
import tempfile
import traceback
import uuid

import celery
import kombu
from celery import Celery, chain, chord, group
from kombu import Exchange, Queue
from kombu.serialization import prepare_accept_content
from kombu.utils.json import dumps as kdumps

OUT = sys.argv[1]
BUS = tempfile.mkdtemp(prefix="celeriac-capture-")
os.makedirs(OUT, exist_ok=True)
manifest = []


def make_app(**conf):
    app = Celery("app2", broker="filesystem://", backend="cache+memory://")
    app.conf.update(
        broker_transport_options={"data_folder_in": BUS, "data_folder_out": BUS,
                                  "control_folder": os.path.join(BUS, "ctl")},
        accept_content=["json", "msgpack", "yaml", "pickle"],
        result_accept_content=["json", "msgpack", "yaml", "pickle"],
        **conf,
    )
    os.makedirs(os.path.join(BUS, "ctl"), exist_ok=True)

    @app.task(name="app2.add")
    def add(x, y):
        return x + y

    @app.task(name="app2.mul")
    def mul(x, y):
        return x * y

    @app.task(name="app2.tsum")
    def tsum(numbers):
        return sum(numbers)

    return app


def drain():
    files = sorted(glob.glob(os.path.join(BUS, "*.msg")), key=lambda p: (int(os.path.basename(p).split("_")[0]), os.path.getmtime(p)))
    out = []
    for p in files:
        with open(p, "rb") as f:
            out.append((os.path.basename(p).rsplit(".", 2)[-2], f.read()))
        os.remove(p)
    return out


def decoded_body(env):
    """The body as kombu decodes it, re-encoded with kombu's JSON (markers for datetimes etc.)."""
    msg = kombu.Message(body=base64.b64decode(env["body"]), content_type=env["content-type"],
                        content_encoding=env["content-encoding"], headers=env["headers"],
                        properties=env["properties"],
                        accept=prepare_accept_content(["json", "msgpack", "yaml", "pickle"]))
    return json.loads(kdumps(msg.decode()))


def save_messages(name, kind, captured, **extra):
    for i, (queue, raw) in enumerate(captured):
        fname = f"{name}.json" if len(captured) == 1 else f"{name}.{i}.json"
        with open(os.path.join(OUT, fname), "wb") as f:
            f.write(raw)
        env = json.loads(raw)
        manifest.append({"file": fname, "kind": kind, "queue": queue, "headers": env["headers"],
                         "content_type": env["content-type"], "body": decoded_body(env), **extra})


def capture_tasks():
    app = make_app()
    add, mul, tsum = app.tasks["app2.add"], app.tasks["app2.mul"], app.tasks["app2.tsum"]
    with app.connection() as conn:
        Queue("errq", Exchange("errq"), "errq")(conn.default_channel).declare()
    add.delay(2, 3)
    save_messages("task_add", "task", drain())
    add.apply_async(kwargs={"x": 4, "y": 4})
    save_messages("task_kwargs", "task", drain())
    add.apply_async((1, 2), countdown=10, expires=60, priority=5, time_limit=30, soft_time_limit=20,
                    headers={"x-custom": "v"}, link=mul.s(10), link_error=add.si(0, 0).set(queue="errq"),
                    shadow="shadowname")
    save_messages("task_options", "task", drain())
    add.apply_async((1, 2), eta=datetime.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc))
    save_messages("task_eta", "task", drain())
    add.delay(datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc),
              [decimal.Decimal("1.10"), uuid.UUID("12345678123456781234567812345678"), b"raw", b"\xff\x00"])
    save_messages("task_json_markers", "task", drain())
    chain(add.s(1, 2), add.s(10), add.si(100, 100)).apply_async()
    save_messages("task_chain", "task", drain())
    group(add.s(1, 2), add.s(3, 4)).apply_async()
    save_messages("task_group", "task", drain())
    chord([add.s(1, 2), add.s(3, 4)], tsum.s()).apply_async()
    save_messages("task_chord", "task", drain())
    add.chunks(zip(range(5), range(5)), 2).apply_async()
    save_messages("task_chunks", "task", drain())
    tsum.map([[1, 2], [3]]).apply_async()
    save_messages("task_map", "task", drain())
    add.starmap([(1, 2), (3, 4)]).apply_async()
    save_messages("task_starmap", "task", drain())
    for ser in ["msgpack", "yaml", "pickle"]:
        app.send_task("app2.add", (2, 3), {"k": "v"}, serializer=ser)
        save_messages(f"task_serializer_{ser}", "task", drain())
    for comp in ["gzip", "bzip2", "lzma", "zstd", "brotli"]:
        app.send_task("app2.add", (2, 3), {"k": "v"}, compression=comp)
        save_messages(f"task_compression_{comp}", "task", drain())
    app_v1 = make_app(task_protocol=1)
    app_v1.send_task("app2.add", (2, 3), countdown=10, expires=30)
    save_messages("task_protocol_v1", "task", drain())


def save_result(name, backend, task_id, **extra):
    raw = backend.get(backend.get_key_for_task(task_id))
    raw = raw if isinstance(raw, bytes) else raw.encode()
    with open(os.path.join(OUT, f"{name}.json"), "wb") as f:
        f.write(raw)
    meta = backend.decode_result(raw)
    manifest.append({"file": f"{name}.json", "kind": "result", "status": meta["status"],
                     "result": json.loads(kdumps(meta["result"])) if meta["status"] not in ("FAILURE", "RETRY", "REVOKED") else json.loads(raw)["result"],
                     "exception": repr(backend.exception_to_python(meta["result"])) if meta["status"] in ("FAILURE", "RETRY", "REVOKED") else None,
                     "traceback": meta.get("traceback"), **extra})


class MyError(Exception):
    pass


def capture_results():
    app = make_app()
    b = app.backend
    b.mark_as_done("0c2fb7a6-0000-4000-8000-000000000001", 5)
    save_result("result_success", b, "0c2fb7a6-0000-4000-8000-000000000001")
    try:
        raise MyError("bad thing", 42)
    except MyError as e:
        b.mark_as_failure("0c2fb7a6-0000-4000-8000-000000000002", e, traceback=traceback.format_exc())
    save_result("result_failure", b, "0c2fb7a6-0000-4000-8000-000000000002")
    try:
        raise ValueError("boom")
    except ValueError as e:
        b.mark_as_retry("0c2fb7a6-0000-4000-8000-000000000003", e, traceback=traceback.format_exc())
    save_result("result_retry", b, "0c2fb7a6-0000-4000-8000-000000000003")
    from celery.exceptions import TaskRevokedError
    b.mark_as_revoked("0c2fb7a6-0000-4000-8000-000000000004", "revoked")
    save_result("result_revoked", b, "0c2fb7a6-0000-4000-8000-000000000004")
    b.store_result("0c2fb7a6-0000-4000-8000-000000000005", {"current": 3, "total": 10}, "PROGRESS")
    save_result("result_custom_state", b, "0c2fb7a6-0000-4000-8000-000000000005")
    app_ext = make_app(result_extended=True)

    from celery.app.task import Context
    req = Context(id="0c2fb7a6-0000-4000-8000-000000000006", task="app2.add", args=[2, 3], kwargs={},
                  hostname="w1@digest", retries=0, delivery_info={"routing_key": "celery"})
    app_ext.backend.mark_as_done(req.id, 5, request=req)
    save_result("result_extended", app_ext.backend, req.id)


def capture_events():
    app = make_app()
    with app.connection() as conn:
        ev = Exchange("celeryev", type="topic")
        Queue("evq", ev, routing_key="#")(conn.default_channel).declare()
        from celery.worker.state import SOFTWARE_INFO
        from celery.utils.sysinfo import load_average
        d = app.events.Dispatcher(conn, hostname="w1@digest", enabled=True)
        d.send("worker-heartbeat", freq=2.0, active=0, processed=0, loadavg=list(load_average()), **SOFTWARE_INFO)
        save_messages("event_worker_heartbeat", "event", drain())
        d.send("task-succeeded", uuid="7ac8a91d-40f1-4df9-9450-ecb61a3087bf", result="5", runtime=0.0051)
        save_messages("event_task_succeeded", "event", drain())
        bd = app.events.Dispatcher(conn, hostname="w1@digest", enabled=True, buffer_group=["task"], buffer_limit=24)
        bd.send("task-received", uuid="ab", name="app2.add", args="(2, 3)", kwargs="{}", root_id="ab", parent_id=None,
                retries=0, eta=None, expires=None)
        bd.send("task-started", uuid="ab")
        bd.send("task-failed", uuid="ab", exception="MyError('bad thing', 42)", traceback="Traceback ...")
        bd.flush()
        save_messages("event_task_multi", "event", drain())
        d.close()
        bd.close()


def capture_pidbox():
    app = make_app()
    with app.connection() as conn:
        Queue("w1@digest.celery.pidbox", app.control.mailbox.exchange, "")(conn.default_channel).declare()
        app.control.broadcast("ping", destination=["w1@digest"], reply=True, timeout=0.2, connection=conn)
        save_messages("pidbox_ping_request", "pidbox", drain())
        app.control.revoke("6573c14f-0000-4000-8000-000000000000", connection=conn)
        save_messages("pidbox_revoke_request", "pidbox", drain())
        node = app.control.mailbox.Node("w1@digest", channel=conn.default_channel)
        oid = "8bfa9e3d-6a6b-3864-92aa-ca11eff8dd0e"
        Queue(f"{oid}.reply.celery.pidbox", app.control.mailbox.reply_exchange, oid)(conn.default_channel).declare()
        node.reply({"ok": "pong"}, exchange="reply.celery.pidbox", routing_key=oid, ticket="858a6172-0000-4000-8000-000000000000")
        save_messages("pidbox_ping_reply", "pidbox", drain())


def capture_canvas():
    """Signature dicts as Celery writes them (`dict(sig)`), and the first message of a chain whose
    group Celery upgrades to a chord: `canvas.json`, read by the canvas unit tests."""
    app = make_app()
    add, mul, tsum = app.tasks["app2.add"], app.tasks["app2.mul"], app.tasks["app2.tsum"]
    sigs = {
        "s": add.s(1, 2),
        "si_set": add.si(1, 2).set(queue="q", countdown=3),
        "link": add.s(1, 2).on_error(tsum.si([0])) | mul.s(3),
        "group": group(add.s(1, 2), add.s(3, 4)),
        "chain": chain(add.s(1, 2), add.s(3), add.s(4)),
        "chord": chord([add.s(1, 2), add.s(3, 4)], tsum.s()),
        "group_or_task": group(add.s(1, 2), add.s(3, 4)) | tsum.s(),
        "chord_or_task": chord([add.s(1, 2)], tsum.s()) | mul.s(2),
        "map": tsum.map([[1, 2], [3]]),
        "starmap": add.starmap([[1, 2], [3, 4]]),
        "chunks": add.chunks([[1, 2], [3, 4], [5, 6]], 2),
    }
    out = {"signatures": {k: json.loads(kdumps(dict(v))) for k, v in sigs.items()}}
    (add.s(1, 2) | group(mul.s(2), mul.s(3)) | tsum.s()).apply_async()
    msgs = []
    for queue, raw in drain():
        env = json.loads(raw)
        msgs.append({"headers": env["headers"], "body": decoded_body(env)})
    out["chain_group_task_messages"] = msgs
    with open(os.path.join(OUT, "canvas.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


if os.environ.get("CAPTURE_ONLY") == "canvas":
    capture_canvas()
    shutil.rmtree(BUS)
    sys.exit(0)
capture_tasks()
capture_canvas()
capture_results()
capture_events()
capture_pidbox()
with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump({"celery": celery.__version__, "kombu": kombu.__version__, "fixtures": manifest}, f, indent=1, sort_keys=True)
shutil.rmtree(BUS)
print(f"captured {len(manifest)} fixtures with celery {celery.__version__} / kombu {kombu.__version__} into {OUT}")
