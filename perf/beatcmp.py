"""Beat side by side on Redis: celeriac's `proj beat` and Python Celery 5.7's `celery beat`, each
with ENTRIES - 1 idle entries due hourly beside one due every 0.25 s that sends to a queue of its
own. The script pops that queue (BLPOP) and notes each arrival; lateness is the gap to the previous
arrival minus 0.25 s (both beats measure an interval from the last send). CPU is the beat process's
own (utime + stime from /proc) over SECONDS, counted from the first arrival, so start-up is left
out. One JSON line per implementation.

Usage: beatcmp.py BROKER_URL PROJ_BIN ENTRIES SECONDS
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import redis

url, proj, entries, secs = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
r = redis.Redis.from_url(url)
tick = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick


def measure(impl, cmd, queue, cwd):
    r.delete(queue)
    log = open(os.path.join(cwd, f"{impl}.log"), "w+")
    p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=log)
    try:
        if r.blpop(queue, timeout=180) is None:
            log.seek(0)
            raise SystemExit(f"{impl}: no run within 180 s: {log.read()[-2000:]}")
        seen = [time.monotonic()]
        cpu0, end = cpu(p.pid), seen[0] + secs
        while time.monotonic() < end:
            if r.blpop(queue, timeout=1) is not None:
                seen.append(time.monotonic())
        used = cpu(p.pid) - cpu0
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    late = sorted(max(b - a - 0.25, 0) * 1000 for a, b in zip(seen, seen[1:]))
    q = lambda f: late[int((len(late) - 1) * f)] if late else float("nan")
    print(json.dumps({"impl": impl, "scenario": "beat_redis", "broker": "redis", "entries": entries,
                      "runs": len(seen), "late_p50_ms": round(q(0.5), 3), "late_p99_ms": round(q(0.99), 3),
                      "cpu_share": round(used / secs, 4)}), flush=True)


with tempfile.TemporaryDirectory() as d:
    # celeriac: the TOML config.
    cfg = os.path.join(d, "beat.toml")
    with open(cfg, "w") as f:
        f.write('[beat_schedule.fast]\ntask = "proj.tasks.add"\nschedule = 0.25\nargs = [1, 1]\n'
                'options = { queue = "beatq-celeriac" }\n')
        for i in range(entries - 1):
            f.write(f'[beat_schedule.idle-{i}]\ntask = "proj.tasks.add"\nschedule = 3600.0\nargs = [1, 1]\n')
    env_cmd = [proj, "beat", "-b", url, "--config", cfg, "-l", "warning"]
    measure("celeriac", env_cmd, "beatq-celeriac", d)
    # Python: the same schedule in a module for `celery -A`.
    with open(os.path.join(d, "pybeatapp.py"), "w") as f:
        f.write(f"""from celery import Celery
app = Celery("pybeatapp", broker={url!r})
app.conf.beat_schedule = {{"fast": {{"task": "proj.tasks.add", "schedule": 0.25, "args": (1, 1),
                                    "options": {{"queue": "beatq-python"}}}}}}
for i in range({entries - 1}):
    app.conf.beat_schedule[f"idle-{{i}}"] = {{"task": "proj.tasks.add", "schedule": 3600.0, "args": (1, 1)}}
""")
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    measure("celery-5.7", [celery, "-A", "pybeatapp", "beat", "-l", "warning", "-s", os.path.join(d, "sched")],
            "beatq-python", d)
