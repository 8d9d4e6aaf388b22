"""Python Celery 5.7 side of the canvas scenario (run by scripts/bench.sh; perf/harness.rs's
`canvas` is the celeriac side): a chord of N `perf.add` parts into `perf.tsum`, seconds from the
first send to the body's result, and a chain of M `perf.add` links, seconds to the last result
and each hop (one step's `date_done` to the next's) p50/p99. The worker is started and warmed
first; afterwards the queue and `unacked` must be empty or the run fails.

Usage: PERF_BROKER=redis://... python pycanvas.py CHORD_N CHAIN_N
"""
import datetime
import json
import os
import sys
import time

import redis
from celery import chain, chord

from pyperf import BROKER, add, app, start_worker, stop, tsum


def done_at(task_id):
    meta = app.backend.get_task_meta(task_id)
    return datetime.datetime.fromisoformat(meta["date_done"]).timestamp()


def main(parts, links, pool, concurrency):
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    p = start_worker(pool, concurrency)
    try:
        add.delay(1, 1).get(timeout=60)
        impl = f"celery-{pool}-c{concurrency}"
        t0, wall0 = time.perf_counter(), time.time()
        res = chord(add.s(i, i) for i in range(parts))(tsum.s())
        sent = time.perf_counter() - t0
        v = res.get(timeout=900)
        secs = time.perf_counter() - t0
        assert v == sum(2 * i for i in range(parts)), v
        # When the worker stored the body's result; `seconds` adds the client's own get(), which
        # in Python drains a pub/sub message for each of the header's results first.
        stored = done_at(res.id) - wall0
        print(json.dumps({"impl": impl, "scenario": "chord", "broker": "redis", "n": parts, "seconds": round(secs, 4),
                          "stored_seconds": round(stored, 4), "send_seconds": round(sent, 4),
                          "parts_per_s": round(parts / stored)}), flush=True)
        t0 = time.perf_counter()
        res = chain(add.s(0, 1), *[add.s(1) for _ in range(links - 1)]).apply_async()
        v = res.get(timeout=900)
        secs = time.perf_counter() - t0
        assert v == links, v
        ids, node = [], res
        while node is not None:
            ids.append(node.id)
            node = node.parent
        done = [done_at(i) for i in reversed(ids)]
        hops = sorted((b - a) * 1000 for a, b in zip(done, done[1:]))
        q = lambda f: hops[int((len(hops) - 1) * f)]
        print(json.dumps({"impl": impl, "scenario": "chain", "broker": "redis", "n": links, "seconds": round(secs, 4),
                          "hop_p50_ms": round(q(0.5), 3), "hop_p99_ms": round(q(0.99), 3)}), flush=True)
    finally:
        stop(p)
    queued, unacked = r.llen("celery"), r.hlen("unacked")
    if queued or unacked:
        print(f"FAILED canvas: {queued} messages left in the queue, {unacked} in unacked", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    parts = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    links = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    pools = os.environ.get("PY_CANVAS_POOLS", "solo:1,prefork:2")
    for pool, c in (p.split(":") for p in pools.split(",")):
        main(parts, links, pool, int(c))
