"""A Python Celery 5.7 client burst: sends N `proj.tasks.add(i, 1)` calls as fast as it can
(apply_async one at a time, as an application would), then waits for every result and checks
it. Used to check that what a celeriac worker leaves in Redis after such a burst is nothing.

Usage: burst.py N
"""
import sys
import time

from pyproj import add

n = int(sys.argv[1])
started = time.time()
results = [add.delay(i, 1) for i in range(n)]
sent = time.time() - started
for i, r in enumerate(results):
    got = r.get(timeout=120)
    assert got == i + 1, (i, got)
print(f"burst of {n} done: sent in {sent:.2f}s, all results in {time.time() - started:.2f}s", flush=True)
