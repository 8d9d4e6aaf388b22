"""A Python Celery 5.7 client sending countdown tasks to a quorum queue on a topic exchange
(PYPROJ_TOPIC_QUEUE): Celery publishes them through native delayed delivery
(`celery_delayed_27`), and whichever worker consumes the queue runs them when the delay is
over. Usage: delayed_checks.py
"""
import time

from pyproj import add

T = 30
t = time.time()
r = add.apply_async((20, 22), countdown=2)
assert r.get(timeout=T) == 42
took = time.time() - t
assert took >= 1.9, took
print(f"delayed task done in {took:.2f}s", flush=True)
print("all python delayed checks passed", flush=True)
