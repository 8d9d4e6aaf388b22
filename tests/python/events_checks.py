"""Celery 5.7's own event receiver and `app.control.inspect()` against a worker (celeriac's, run
with -E): worker and task events with the fields Flower reads, and every inspect and control
command answered. Usage: events_checks.py NODENAME (broker and backend from the environment)."""
import os
import sys
import threading
import time

from celery import Celery
from celery.events.state import State

node = sys.argv[1]
app = Celery("pyproj", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"])
state = State()
seen = []


def receive():
    with app.connection() as conn:
        recv = app.events.Receiver(conn, handlers={"*": lambda e: (seen.append(e), state.event(e))})
        recv.capture(limit=None, timeout=30, wakeup=True)


threading.Thread(target=receive, daemon=True).start()
time.sleep(1.5)
assert app.send_task("proj.tasks.add", (2, 3)).get(timeout=10) == 5
failing = app.send_task("proj.tasks.fail", ("boom",))
try:
    failing.get(timeout=10)
except Exception:
    pass
deadline = time.time() + 10
# The receiver's wake-up (`heartbeat` command) draws an extra heartbeat with the software only;
# the regular ones (every 2 s) carry the counters.
kinds = lambda: {e["type"] + ("" if e.get("freq", 2.0) == 2.0 else "-extra") for e in seen if e.get("hostname") == node}
while time.time() < deadline and not {"worker-heartbeat", "task-received", "task-started", "task-succeeded",
                                       "task-failed"} <= kinds():
    time.sleep(0.1)
assert {"worker-heartbeat", "task-received", "task-started", "task-succeeded", "task-failed"} <= kinds(), kinds()
beat = next(e for e in seen if e["type"] == "worker-heartbeat" and e["hostname"] == node and e["freq"] == 2.0)
for k in ["freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys", "clock", "pid", "utcoffset"]:
    assert k in beat, (k, beat)
ok = [e for e in seen if e["type"] == "task-succeeded" and e["hostname"] == node]
assert ok and ok[0]["result"] == "5" and ok[0]["runtime"] >= 0, ok
received = next(e for e in seen if e["type"] == "task-received" and e["name"] == "proj.tasks.add")
assert received["args"] == "(2, 3)" or received["args"] == "[2, 3]", received
assert node in state.workers and state.workers[node].alive, state.workers
task = state.tasks.get(failing.id)
assert task is not None and task.state == "FAILURE" and "boom" in task.exception, (task and task.state, task)
print("events ok")

i = app.control.inspect(destination=[node], timeout=3)
stats = i.stats()[node]
assert stats["total"].get("proj.tasks.add", 0) >= 1 and "pool" in stats and stats["broker"]["transport"], stats
assert "proj.tasks.add" in i.registered()[node]
assert [q["name"] for q in i.active_queues()[node]] == ["celery"], i.active_queues()
later = app.send_task("proj.tasks.add", (1, 1), countdown=60)
time.sleep(0.5)
sched = i.scheduled()[node]
assert any(s["request"]["id"] == later.id for s in sched), sched
assert later.id in i.query_task(later.id)[node], i.query_task(later.id)
slow = app.send_task("proj.tasks.sleep", (3,))
time.sleep(0.5)
act = i.active()[node]
assert any(a["id"] == slow.id and a["time_start"] for a in act), act
app.control.revoke(later.id)
time.sleep(0.3)
assert later.id in i.revoked()[node]
conf = i.conf()[node]
assert "broker_url" in conf, conf
assert i.clock()[node]["clock"] > 0
assert "celeriac" in i.report()[node]["ok"]
assert i.reserved()[node] == []
c = lambda method, **kw: app.control.broadcast(method, arguments=kw, destination=[node], reply=True, timeout=3)[0][node]
assert c("disable_events") == {"ok": "task events disabled"}
assert c("enable_events") == {"ok": "task events enabled"}
assert c("time_limit", task_name="proj.tasks.add", soft=10, hard=20) == {"ok": "time limits set successfully"}
assert c("time_limit", task_name="nope", soft=1) == {"error": "unknown task"}
assert "error" in c("pool_grow", n=1) and "does not apply" in c("pool_grow", n=1)["error"]
assert c("heartbeat") is None
print("inspect ok")
print("all events checks passed")
