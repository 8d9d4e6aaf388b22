"""Python Celery 5.7 on RabbitMQ, the reference side of scripts/bench.sh's AMQP scenarios: drain
with Redis results, drain without results, and sequential round trips, for -P solo -c 1 and
-P prefork -c 2. Same tasks and output lines as pyperf.py.

Env: PERF_BROKER (amqp://…), PERF_RESULTS (redis://…). Usage: pyperf_amqp.py N RTT_N
"""
import json
import os
import sys
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The same app, tasks and worker as pyperf.py (PERF_RESULTS sends its results to Redis).
from pyperf import add, app, cpu_seconds, noop, round_trips, rss_mb, rtt_line, start_worker, stop  # noqa: E402

RESULTS = os.environ["PERF_RESULTS"]


def ready(conn):
    return conn.default_channel.queue_declare("celery", passive=True).message_count


def drain(pool, concurrency, n, task):
    r = redis.Redis.from_url(RESULTS)
    r.flushdb()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            if task == "perf.add":
                add.apply_async((i, i), producer=producer)
            else:
                noop.apply_async((), producer=producer)
        # Without results, the end is a sentinel with one, sent last (one queue, FIFO): with
        # early acks the queue empties of ready messages while prefetched tasks still run.
        sentinel = add.apply_async((0, 0), producer=producer) if task != "perf.add" else None
    p = start_worker(pool, concurrency)
    start = None
    with app.connection_for_write() as conn:
        # The clock starts at the worker's first progress (the queue shrinks), as in pyperf.py.
        while True:
            left = ready(conn)
            if left < n and start is None:
                start = time.monotonic()
            if left == 0:
                if sentinel is not None and r.exists(f"celery-task-meta-{sentinel.id}"):
                    break
                if sentinel is None and r.eval("return #redis.call('keys', 'celery-task-meta-*')", 0) >= n:
                    break
            time.sleep(0.005)
        secs = time.monotonic() - start
        cpu = cpu_seconds(p.pid)
        rss = rss_mb(p.pid)
        # A warm shutdown right after the last result left a message behind in some runs (taken
        # back unacked): the worker is given a second first, outside the timed window.
        time.sleep(1)
        stop(p)
        # Unacked messages of a stopped worker are requeued: any left would show here.
        time.sleep(0.3)
        left = ready(conn)
    if left:
        print(f"FAILED drain: {left} messages left in the queue", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"impl": f"celery-{pool}-c{concurrency}", "scenario": "drain", "broker": "amqp", "task": task,
                      "results": task == "perf.add", "n": n, "seconds": round(secs, 4), "tasks_per_s": round(n / secs),
                      "cpu_us_per_task": round(cpu * 1e6 / n, 1), "worker_rss_mb": round(rss, 1),
                      "left_in_queue": left}), flush=True)


def rtt(pool, concurrency, n):
    redis.Redis.from_url(RESULTS).flushdb()
    p = start_worker(pool, concurrency)
    samples = round_trips(add, n)
    stop(p)
    print(rtt_line(f"celery-{pool}-c{concurrency}", "amqp", samples), flush=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rtt_n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    for pool, c in [("solo", 1), ("prefork", 2)]:
        drain(pool, c, n, "perf.add")
        drain(pool, c, n, "perf.noop")
        rtt(pool, c, rtt_n)
