"""`inspect ping` round trips side by side on Redis: a celeriac worker (examples/proj) and a
Python Celery 5.7 worker (tests/python/pyproj.py, -P solo) on one broker, each pinged N times in a
row by one node name, from Python Celery's client (`app.control.inspect(destination=[node],
limit=1).ping()`, the call's wall time) and from celeriac's (`Client::inspect()`, the perf
harness: the call's wall time and the time from the request's publish to the reply). One JSON
line per client and worker.

Usage: pingcmp.py BROKER_URL PROJ_BIN PERF_BIN N
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from celery import Celery

url, proj, perf, n = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]), int(sys.argv[4])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
host = socket.gethostname()
app = Celery("pingcmp", broker=url)


def answers(node):
    return bool(app.control.inspect(destination=[node], limit=1, timeout=1).ping())


def python_client(node, worker):
    for _ in range(10):
        app.control.inspect(destination=[node], limit=1, timeout=2).ping()
    wall = []
    for i in range(n):
        t0 = time.perf_counter()
        if not app.control.inspect(destination=[node], limit=1, timeout=2).ping():
            raise SystemExit(f"{node} did not answer ping {i}")
        wall.append((time.perf_counter() - t0) * 1e6)
    wall.sort()
    q = lambda f: wall[int((len(wall) - 1) * f)]
    print(json.dumps({"impl": "celery-client", "scenario": "ping", "broker": "redis", "worker": worker, "n": n,
                      "wall_p50_us": round(q(0.5), 1), "wall_p99_us": round(q(0.99), 1)}), flush=True)


env = dict(os.environ, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url)
with tempfile.TemporaryDirectory() as d:
    workers = {
        "celeriac": ([proj, "-b", url, "worker", "-c", "2", "-n", "rsping@%h", "-l", "error"], root, f"rsping@{host}"),
        "celery-solo": ([os.path.join(os.path.dirname(sys.executable), "celery"), "-A", "pyproj", "worker", "-P", "solo",
                         "-n", "pyping@%h", "-l", "error", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                        os.path.join(root, "tests", "python"), f"pyping@{host}"),
    }
    procs = []
    try:
        for name, (cmd, cwd, node) in workers.items():
            log = open(os.path.join(d, f"{name}.log"), "w+")
            procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=log))
            deadline = time.monotonic() + 60
            while not answers(node):
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"{name} never answered ping: {log.read()[-2000:]}")
        for name, (_, _, node) in workers.items():
            python_client(node, name)
            out = subprocess.run([perf, "--broker", url, "--scenario", "ping", "--node", node, "--worker", name,
                                  "--rtt", str(n)], check=True, capture_output=True, text=True).stdout
            sys.stdout.write(out)
            sys.stdout.flush()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
