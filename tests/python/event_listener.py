"""Prints the first event that reaches a kombu consumer bound to Celery's event exchange
(fanout on Redis, as Celery declares it there), then exits. Used by the fanout interop test."""
import json
import sys

from kombu import Consumer, Exchange, Queue

from pyproj import app

with app.connection() as conn:
    queue = Queue("celeriac-evtest", Exchange("celeryev", type="fanout"), routing_key="#", auto_delete=True, durable=False)

    def on_event(body, message):
        print(json.dumps(body), flush=True)
        sys.exit(0)

    with Consumer(conn, queues=[queue], callbacks=[on_event], accept=["json"], no_ack=True):
        print("listening", flush=True)
        while True:
            conn.drain_events(timeout=20)
