"""Python Celery 5.7 canvas sent to whatever worker consumes the queue (issue 17, first part):
chains, link callbacks and link_error errbacks, with the stored `children` Python reads back.

Env: CELERY_BROKER_URL / CELERY_RESULT_BACKEND.
"""
from celery import chain, group

import time

from pyproj import add, fail, mul

T = 20


def check(name, fn):
    fn()
    print(f"ok {name}", flush=True)


def a_chain():
    r = chain(add.s(4, 4), mul.s(8), add.si(1, 1), add.s(5))()
    assert r.get(timeout=T) == 7, r.get(timeout=T)
    # Walk back from the last step: each parent's result lists the next step as a child.
    parent = r.parent
    assert parent.get(timeout=T) == 2
    assert parent.parent.get(timeout=T) == 64
    first = parent.parent.parent
    assert first.get(timeout=T) == 8
    assert [c.id for c in first.children] == [parent.parent.id], first.children


def chain_into_group():
    r = chain(add.s(1, 1), group(mul.s(2), mul.s(3)))()
    assert r.get(timeout=T) == [4, 6], r.get(timeout=T)


def link_callbacks():
    r = add.apply_async((2, 3), link=[mul.s(10), add.s(100)])
    assert r.get(timeout=T) == 5
    children = None
    deadline = time.time() + T
    while not children and time.time() < deadline:
        children = r.children
        time.sleep(0.05)
    assert sorted(c.get(timeout=T) for c in children) == [50, 105], children


def link_error():
    # An immutable errback with a known id (frozen before the send) proves it ran.
    marker = add.si(40, 2)
    marked = marker.freeze()
    r = fail.apply_async(("boom",), link_error=marker)
    try:
        r.get(timeout=T)
    except ValueError:
        pass
    else:
        raise AssertionError("expected ValueError")
    assert marked.get(timeout=T) == 42


if __name__ == "__main__":
    for name, fn in [("a_chain", a_chain), ("chain_into_group", chain_into_group), ("link_callbacks", link_callbacks), ("link_error", link_error)]:
        check(name, fn)
    print("all python canvas checks passed", flush=True)
