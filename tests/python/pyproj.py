"""The Celery tutorial's project in Python, the reference side of the interop tests.

Broker and backend come from CELERY_BROKER_URL / CELERY_RESULT_BACKEND. Task names and
parameters match celeriac's examples/proj.rs.
"""
import os
import time

from celery import Celery

app = Celery("proj")
app.conf.update(
    broker_url=os.environ["CELERY_BROKER_URL"],
    result_backend=os.environ["CELERY_RESULT_BACKEND"],
    task_acks_late=os.environ.get("PYPROJ_ACKS_LATE") == "1",
    worker_prefetch_multiplier=int(os.environ.get("PYPROJ_PREFETCH", "4")),
    task_default_queue=os.environ.get("PYPROJ_QUEUE", "celery"),
    task_default_queue_type=os.environ.get("PYPROJ_QUEUE_TYPE", "classic"),
    broker_transport_options={
        "visibility_timeout": int(os.environ.get("PYPROJ_VISIBILITY", "3600")),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    worker_hijack_root_logger=False,
    result_extended=os.environ.get("PYPROJ_RESULT_EXTENDED") == "1",
)
if os.environ.get("PYPROJ_TOPIC_QUEUE"):
    # A quorum queue on a topic exchange: what Celery 5.5's native delayed delivery needs.
    from kombu import Exchange, Queue

    _q = os.environ["PYPROJ_TOPIC_QUEUE"]
    app.conf.task_queues = [Queue(_q, Exchange(_q, type="topic"), routing_key=_q, queue_arguments={"x-queue-type": "quorum"})]
    app.conf.task_default_queue = _q


@app.task(name="proj.tasks.add")
def add(x, y):
    return x + y


@app.task(name="proj.tasks.mul")
def mul(x, y):
    return x * y


@app.task(name="proj.tasks.xsum")
def xsum(numbers):
    return sum(numbers)


@app.task(name="proj.tasks.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(name="proj.tasks.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="proj.tasks.flaky", bind=True, max_retries=None)
def flaky(self, fail_times):
    if self.request.retries < fail_times:
        raise self.retry(exc=ValueError(f"failing on purpose, attempt {self.request.retries + 1}"), countdown=0.1)
    return self.request.retries


@app.task(name="proj.tasks.progress", bind=True)
def progress(self, steps, delay):
    for i in range(1, steps + 1):
        time.sleep(delay)
        self.update_state(state="PROGRESS", meta={"current": i, "total": steps})
    return steps
