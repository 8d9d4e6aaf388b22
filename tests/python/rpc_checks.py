"""A Python Celery 5.7 client with the rpc:// result backend against whatever worker consumes
its queue (issue 16): results, a failure and a countdown, all arriving as messages on this
client's own reply queue. (Python's rpc client sees intermediate states only while no `get()`
drains its reply queue, so STARTED is checked from the Rust side, tests/it/amqp.rs.)

Env: CELERY_BROKER_URL (amqp://…); the result backend is forced to rpc://.
"""
import os
import sys
import time

os.environ["CELERY_RESULT_BACKEND"] = "rpc://"
from pyproj import add, fail  # noqa: E402

T = 20


def check(name, fn):
    fn()
    print(f"ok {name}", flush=True)


def results():
    rs = [add.delay(i, i) for i in range(50)]
    assert [r.get(timeout=T) for r in rs] == [2 * i for i in range(50)]


def failure():
    try:
        fail.delay("via rpc").get(timeout=T)
    except ValueError as e:
        assert "via rpc" in str(e), e
    else:
        raise AssertionError("expected ValueError")


def canvas():
    # The last step is sent by the worker; its result still comes to this client's queue (the
    # frozen step carries this client's reply_to).
    from celery import chain, group
    assert chain(add.s(1, 1), add.s(2), add.s(3))().get(timeout=T) == 7
    assert group(add.s(i, i) for i in range(5))().get(timeout=T) == [0, 2, 4, 6, 8]


def countdown():
    t = time.time()
    assert add.apply_async((2, 3), countdown=1).get(timeout=T) == 5
    assert time.time() - t >= 0.9


if __name__ == "__main__":
    for name, fn in [("results", results), ("failure", failure), ("countdown", countdown), ("canvas", canvas)]:
        check(name, fn)
    print("all python rpc checks passed", flush=True)
    sys.exit(0)
