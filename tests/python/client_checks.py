"""Python Celery 5.7 client against a celeriac worker running examples/proj (interop test).

Each check prints its name; any failure raises, so the exit status tells the Rust test.
"""
import datetime
import sys
import time

from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult

from pyproj import add, app, mul, xsum

T = 15


def check(name, fn):
    fn()
    print("ok", name, flush=True)


def basic():
    assert add.delay(4, 4).get(timeout=T) == 8
    assert mul.delay(8, 8).get(timeout=T) == 64
    assert xsum.delay([1, 2, 3, 4]).get(timeout=T) == 10


def keyword_args():
    assert add.delay(x=4, y=4).get(timeout=T) == 8
    assert add.apply_async((1,), {"y": 10}).get(timeout=T) == 11


def type_error_raises_type_error():
    r = add.delay(2, "2")
    try:
        r.get(timeout=T)
    except TypeError as e:
        assert r.state == "FAILURE", r.state
        assert r.traceback and "TypeError" in r.traceback, r.traceback
        assert "y" in str(e), str(e)
    else:
        raise AssertionError("expected TypeError")


def countdown_and_eta():
    start = time.monotonic()
    assert add.apply_async((1, 1), countdown=1).get(timeout=T) == 2
    assert time.monotonic() - start >= 1.0
    eta = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    start = time.monotonic()
    assert add.apply_async((2, 2), eta=eta).get(timeout=T) == 4
    assert time.monotonic() - start >= 0.9


def expires():
    r = add.apply_async((1, 1), countdown=2, expires=0.5)
    try:
        r.get(timeout=T)
    except TaskRevokedError:
        assert r.state == "REVOKED", r.state
    else:
        raise AssertionError("expected TaskRevokedError")


def priority():
    rs = [add.apply_async((i, i), priority=p) for i, p in enumerate([9, 0, 5, 3])]
    assert [r.get(timeout=T) for r in rs] == [0, 2, 4, 6]


def states():
    r = add.delay(20, 22)
    assert r.get(timeout=T) == 42
    assert r.state == "SUCCESS" and r.successful() and r.ready()
    assert AsyncResult(r.id, app=app).result == 42
    unknown = app.send_task("proj.tasks.nope", (1,))
    try:
        unknown.get(timeout=T)
    except Exception as e:
        assert type(e).__name__ == "NotRegistered", repr(e)
    else:
        raise AssertionError("expected NotRegistered")


for name, fn in [("basic", basic), ("keyword_args", keyword_args), ("type_error", type_error_raises_type_error),
                 ("countdown_and_eta", countdown_and_eta), ("expires", expires), ("priority", priority),
                 ("states", states)]:
    check(name, fn)
print("all python client checks passed")
sys.exit(0)
