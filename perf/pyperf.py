"""Python Celery 5.7 side of the end-to-end harness (run by scripts/bench.sh).

Same scenarios and semantics as perf/harness.rs, over the same Redis: `drain` (N tasks loaded
with no worker running, then `celery worker` starts; seconds until every result is stored, or
for the ignore_result no-op until the queue and unacked bookkeeping are empty) and `rtt`
(sequential delay().get()), and `open_loop` (sends at a fixed rate, latency from each scheduled send
time to the moment a listener thread sees the result published). Prints one JSON line per scenario.
"""
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import redis
from celery import Celery

BROKER = os.environ["PERF_BROKER"]
# Results in the broker's Redis, or PERF_RESULTS with another broker (pyperf_amqp.py).
app = Celery("pyperf", broker=BROKER, backend=os.environ.get("PERF_RESULTS", BROKER))
app.conf.update(worker_hijack_root_logger=False, worker_redirect_stdouts=False)


@app.task(name="perf.add")
def add(x, y):
    return x + y


@app.task(name="perf.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="perf.noop", ignore_result=True)
def noop():
    return None


def worker_procs(pid):
    """/proc entries of the worker and its children (prefork pool processes)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            yield entry, fields


def cpu_seconds(pid):
    tick = os.sysconf("SC_CLK_TCK")
    return sum((int(f[11]) + int(f[12])) / tick for _, f in worker_procs(pid))


def rss_mb(pid):
    total = 0
    for entry, _ in worker_procs(pid):
        try:
            with open(f"/proc/{entry}/status") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            continue
    return total / 1024


def start_worker(pool, concurrency):
    cmd = [sys.executable, "-m", "celery", "-A", "pyperf", "worker", "-P", pool, "-c", str(concurrency),
           "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def drain(pool, concurrency, n, task):
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    sig = add if task == "perf.add" else noop
    with app.producer_or_acquire() as producer:
        for i in range(n):
            if task == "perf.add":
                sig.apply_async((i, i), producer=producer)
            else:
                sig.apply_async((), producer=producer)
    info0 = {**r.info("stats"), **r.info("cpu")}
    p = start_worker(pool, concurrency)
    ours = 0  # commands this poll loop sends, taken off Redis's count
    # The clock starts at the worker's first progress (the queue shrinks), so Python's ~1.5 s
    # interpreter and app start-up is not counted against it (celeriac's start-up is counted).
    # Polling must not load the Redis both workers depend on: cheap LLEN/HLEN while the queue
    # drains, and the (costly) count of result keys only once it is empty.
    start = None
    while True:
        left = r.llen("celery")
        ours += 1
        if left < n and start is None:
            start = time.monotonic()
        if left == 0:
            ours += 1
            if r.hlen("unacked") == 0:
                ours += 1
                if task != "perf.add" or r.eval("return #redis.call('keys', 'celery-task-meta-*')", 0) >= n:
                    break
        time.sleep(0.005)
    secs = time.monotonic() - start
    info1 = {**r.info("stats"), **r.info("cpu")}
    # The first INFO pair is counted in the second reading, and the second's own two.
    cmds = info1["total_commands_processed"] - info0["total_commands_processed"] - ours - 2
    rcpu = (info1["used_cpu_sys"] + info1["used_cpu_user"]) - (info0["used_cpu_sys"] + info0["used_cpu_user"])
    cpu = cpu_seconds(p.pid)
    rss = rss_mb(p.pid)
    stop(p)
    print(json.dumps({"impl": f"celery-{pool}-c{concurrency}", "scenario": "drain", "broker": "redis", "task": task,
                      "results": task == "perf.add", "n": n, "seconds": round(secs, 4), "tasks_per_s": round(n / secs),
                      "cpu_us_per_task": round(cpu * 1e6 / n, 1), "worker_rss_mb": round(rss, 1),
                      "redis_cmds_per_task": round(cmds / n, 3), "redis_cpu_us_per_task": round(rcpu * 1e6 / n, 2)}),
          flush=True)


def round_trips(task, n):
    """n sequential task.delay(i, 1).get() after 20 warm-up calls: the sorted samples in µs."""
    for i in range(20):
        task.delay(i, i).get(timeout=30)
    samples = []
    for i in range(n):
        t = time.perf_counter()
        assert task.delay(i, 1).get(timeout=30) == i + 1
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return samples


def rtt_line(impl, broker, samples, **extra):
    q = lambda f: samples[min(len(samples) - 1, int(f * len(samples)))]
    return json.dumps({"impl": impl, "scenario": "rtt", "broker": broker, "n": len(samples),
                       "p50_us": round(q(0.5), 1), "p90_us": round(q(0.9), 1), "p99_us": round(q(0.99), 1),
                       "p999_us": round(q(0.999), 1), "max_us": round(samples[-1], 1), **extra})


def rtt(pool, concurrency, n):
    redis.Redis.from_url(BROKER).flushdb()
    p = start_worker(pool, concurrency)
    samples = round_trips(add, n)
    idle_rss = rss_mb(p.pid)
    stop(p)
    print(rtt_line(f"celery-{pool}-c{concurrency}", "redis", samples, worker_rss_mb=round(idle_rss, 1)), flush=True)


def open_loop(pool, concurrency, rate, secs=2):
    """Coordinated-omission-corrected, as in the Rust harness: each latency runs from the time
    the schedule said to send, whether or not the sender was on time. Results are seen by a
    PSUBSCRIBE listener on its own connection (a thread), the moment Redis publishes them."""
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    p = start_worker(pool, concurrency)
    for i in range(20):
        add.delay(i, i).get(timeout=30)
    n = rate * secs
    seen = {}
    sub = r.pubsub()
    sub.psubscribe("celery-task-meta-*")
    while sub.get_message(timeout=1) is None:
        pass  # the psubscribe confirmation

    def listen():
        while len(seen) < n:
            m = sub.get_message(timeout=1)
            if m and m["type"] == "pmessage":
                seen.setdefault(m["channel"].decode()[len("celery-task-meta-"):], time.perf_counter())
            elif m is None and stop_listening.is_set():
                return

    stop_listening = threading.Event()
    t = threading.Thread(target=listen, daemon=True)
    t.start()
    due_of = {}
    start = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            due_of[add.apply_async((i, 1), producer=producer).id] = due
    deadline = time.perf_counter() + 60
    while len(seen) < n and time.perf_counter() < deadline:
        time.sleep(0.01)
    stop_listening.set()
    t.join()
    stop(p)
    samples = sorted((seen[i] - due) * 1e6 for i, due in due_of.items() if i in seen)
    q = lambda f: samples[min(len(samples) - 1, int(f * len(samples)))]
    print(json.dumps({"impl": f"celery-{pool}-c{concurrency}", "scenario": "open_loop", "broker": "redis", "rate": rate,
                      "n": n, "errors": n - len(samples), "p50_us": round(q(0.5), 1), "p90_us": round(q(0.9), 1),
                      "p99_us": round(q(0.99), 1), "p999_us": round(q(0.999), 1), "max_us": round(samples[-1], 1)}),
          flush=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rtt_n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    for pool, c in [("solo", 1), ("prefork", 2)]:
        drain(pool, c, n, "perf.add")
        drain(pool, c, n, "perf.noop")
        rtt(pool, c, rtt_n)
        for rate in [int(x) for x in os.environ.get("PY_RATES", "200,1000").split(",") if x]:
            open_loop(pool, c, rate)
