"""Task execution semantics seen from a Python Celery 5.7 client, against a celeriac worker
running examples/proj on Redis (issue 5): retries, countdown, expires, time limits, revoke,
update_state progress, ignore_result.

Each check prints its name; any failure raises, so the exit status tells the Rust test.
"""
import time

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.exceptions import TaskRevokedError

from pyproj import add, app, fail, flaky, progress, sleep

T = 15


def check(name, fn):
    fn()
    print("ok", name, flush=True)


def states_of(r):
    """Every state seen while polling until the task is ready."""
    seen = []
    deadline = time.time() + T
    while not r.ready():
        assert time.time() < deadline, f"{r.id} never became ready; saw {seen}"
        s = r.state
        if not seen or seen[-1] != s:
            seen.append(s)
        time.sleep(0.005)
    return seen


def retries():
    r = flaky.delay(2)
    seen = states_of(r)
    assert r.get(timeout=T) == 2
    assert "RETRY" in seen, seen
    assert r.state == "SUCCESS"


def failure_is_value_error():
    r = fail.delay("boom")
    try:
        r.get(timeout=T)
        raise AssertionError("no exception")
    except ValueError as e:
        assert str(e) == "boom", e
    assert r.state == "FAILURE"


def countdown():
    sent = time.time()
    assert add.apply_async((1, 2), countdown=1).get(timeout=T) == 3
    assert time.time() - sent >= 0.95


def expires():
    r = add.apply_async((1, 2), countdown=1, expires=0.3)
    try:
        r.get(timeout=T)
        raise AssertionError("an expired task ran")
    except TaskRevokedError:
        pass
    assert r.state == "REVOKED"


def time_limit():
    started = time.time()
    r = sleep.apply_async((10,), time_limit=0.5)
    try:
        r.get(timeout=T)
        raise AssertionError("no time limit")
    except TimeLimitExceeded as e:
        assert e.args == (0.5,), e.args
    assert r.state == "FAILURE"
    assert time.time() - started < 5


def soft_time_limit():
    # proj.tasks.sleep under soft_time_limit=1: SoftTimeLimitExceeded after about 1 s, as a
    # Python worker raises it inside time.sleep.
    started = time.time()
    r = sleep.apply_async((5,), soft_time_limit=1)
    try:
        r.get(timeout=T)
        raise AssertionError("no soft time limit")
    except SoftTimeLimitExceeded:
        pass
    took = time.time() - started
    assert r.state == "FAILURE"
    assert 0.9 < took < 3, took
    # With both limits, the soft one comes first.
    r = sleep.apply_async((5,), soft_time_limit=0.3, time_limit=2)
    try:
        r.get(timeout=T)
        raise AssertionError("no soft time limit")
    except SoftTimeLimitExceeded:
        pass


def revoke():
    r = add.apply_async((1, 2), countdown=2)
    time.sleep(0.3)
    app.control.revoke(r.id)
    try:
        r.get(timeout=T)
        raise AssertionError("a revoked task ran")
    except TaskRevokedError:
        pass
    # terminate=True stops a running task.
    r = sleep.delay(10)
    time.sleep(0.5)
    started = time.time()
    r.revoke(terminate=True, signal="SIGKILL")
    try:
        r.get(timeout=T)
        raise AssertionError("a terminated task finished")
    except TaskRevokedError:
        pass
    assert time.time() - started < 5


def update_state_progress():
    r = progress.delay(3, 0.2)
    currents = []
    deadline = time.time() + T
    while not r.ready():
        assert time.time() < deadline
        # One read of the meta: `r.state` then `r.info` are two reads, and the task can finish
        # between them (the second then returns the result, not the progress).
        meta = r.backend.get_task_meta(r.id)
        if meta["status"] == "PROGRESS":
            info = meta["result"]
            assert info["total"] == 3, info
            if not currents or currents[-1] != info["current"]:
                currents.append(info["current"])
        time.sleep(0.01)
    assert r.get(timeout=T) == 3
    assert currents and currents[-1] >= 2, currents


def ignore_result():
    r = add.apply_async((1, 2), ignore_result=True)
    with app.connection_for_write() as conn:
        deadline = time.time() + T
        if app.conf.broker_url.startswith("redis"):
            client = conn.default_channel.client
            waiting = lambda: client.llen("celery") or client.hlen("unacked")
        else:
            waiting = lambda: conn.default_channel.queue_declare("celery", passive=True).message_count
        while waiting():
            assert time.time() < deadline, "the task was never consumed"
            time.sleep(0.01)
    time.sleep(0.3)
    assert r.state == "PENDING", r.state
    assert r.backend.get(r.backend.get_key_for_task(r.id)) is None


if __name__ == "__main__":
    for name, fn in [
        ("retries", retries),
        ("failure_is_value_error", failure_is_value_error),
        ("countdown", countdown),
        ("expires", expires),
        ("time_limit", time_limit),
        ("soft_time_limit", soft_time_limit),
        ("revoke", revoke),
        ("update_state_progress", update_state_progress),
        ("ignore_result", ignore_result),
    ]:
        check(name, fn)
    print("all python semantics checks passed", flush=True)
