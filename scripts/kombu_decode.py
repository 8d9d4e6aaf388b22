"""Decode celeriac-written wire files with the real kombu/celery, for the round-trip tests.

Usage: kombu_decode.py DIR. For every DIR/*.task.json (a kombu envelope) prints what kombu
decodes (headers and body, re-encoded with kombu's JSON); for DIR/*.result.json what Celery's
backend decodes and the exception it would raise. One JSON object on stdout, keyed by file name.
"""
import base64
import json
import os
import sys

import kombu
from celery import Celery
from kombu.serialization import prepare_accept_content
from kombu.utils.json import dumps as kdumps

d = sys.argv[1]
out = {}
app = Celery("roundtrip", broker="memory://", backend="cache+memory://")
for name in sorted(os.listdir(d)):
    raw = open(os.path.join(d, name), "rb").read()
    if name.endswith(".task.json"):
        env = json.loads(raw)
        body = base64.b64decode(env["body"]) if env["properties"].get("body_encoding") == "base64" else env["body"]
        msg = kombu.Message(body=body, content_type=env["content-type"], content_encoding=env["content-encoding"],
                            headers=env["headers"], properties=env["properties"],
                            accept=prepare_accept_content(["json", "msgpack", "yaml", "pickle"]))
        out[name] = {"headers": env["headers"], "body": json.loads(kdumps(msg.decode()))}
    elif name.endswith(".result.json"):
        meta = app.backend.decode_result(raw)
        exc = None
        if meta["status"] in ("FAILURE", "RETRY", "REVOKED"):
            e = app.backend.exception_to_python(meta["result"])
            exc = {"type": type(e).__name__, "args": [str(a) for a in e.args], "str": str(e)}
        out[name] = {"status": meta["status"], "result": json.loads(kdumps(meta["result"])) if exc is None else None,
                     "exception": exc, "traceback": meta.get("traceback")}
json.dump(out, sys.stdout)
