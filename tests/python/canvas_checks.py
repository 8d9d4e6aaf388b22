"""Python Celery 5.7 canvas sent to whatever worker consumes the queue (issue 17): chains, link
callbacks and link_error errbacks with the stored `children` Python reads back, groups and
GroupResult save/restore, chords (nested, in chains, failing with ChordError), chunks, map and
starmap.

Env: CELERY_BROKER_URL / CELERY_RESULT_BACKEND.
"""
from celery import chain, chord, group
from celery.exceptions import ChordError
from celery.result import AsyncResult, GroupResult

import time

from pyproj import add, fail, mul, xsum

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
    # Several callbacks are sent as one group, which is the task's one child (as on a Python worker).
    assert len(children) == 1 and isinstance(children[0], GroupResult), children
    assert children[0].get(timeout=T) == [50, 105], children


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


def a_group():
    r = group(add.s(i, i) for i in range(10))()
    assert r.get(timeout=T) == [2 * i for i in range(10)], r.get(timeout=T)
    r.save()
    back = GroupResult.restore(r.id)
    assert [c.id for c in back.results] == [c.id for c in r.results]
    assert back.get(timeout=T) == [2 * i for i in range(10)]


def chords():
    r = chord((add.s(i, i) for i in range(20)), xsum.s())()
    assert r.get(timeout=T) == sum(2 * i for i in range(20)), r.get(timeout=T)
    assert (group(add.s(1, 1), add.s(2, 2)) | xsum.s())().get(timeout=T) == 6
    assert (add.s(1, 1) | chord([add.s(1), add.s(2)], xsum.s()) | add.s(100))().get(timeout=T) == 107
    inner = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    assert chord([inner, add.s(3, 3)], xsum.s())().get(timeout=T) == 12
    assert chord([], xsum.s())().get(timeout=T) == 0


def a_failing_chord():
    r = chord([add.s(1, 1), fail.s("part")], xsum.s())()
    # r.get() raises the failed part's ValueError (its parent, the header, fails first); the
    # body's own result is the ChordError.
    try:
        AsyncResult(r.id).get(timeout=T)
    except ChordError as e:
        assert "Dependency" in str(e) and "ValueError('part')" in str(e), str(e)
    else:
        raise AssertionError("expected ChordError")


def chunks_map_starmap():
    assert add.chunks(zip(range(10), range(10)), 3)().get(timeout=T) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert xsum.map([[1, 2], [3]]).delay().get(timeout=T) == [3, 3]
    assert add.starmap([(1, 2), (3, 4)]).delay().get(timeout=T) == [3, 7]


if __name__ == "__main__":
    for name, fn in [("a_chain", a_chain), ("chain_into_group", chain_into_group), ("link_callbacks", link_callbacks),
                     ("link_error", link_error), ("a_group", a_group), ("chords", chords),
                     ("a_failing_chord", a_failing_chord), ("chunks_map_starmap", chunks_map_starmap)]:
        check(name, fn)
    print("all python canvas checks passed", flush=True)
