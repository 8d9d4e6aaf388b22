"""Random solar events, places and instants with the next event Python Celery 5.7 computes with
PyEphem (`solar.remaining_estimate(last_run_at=now)` with `nowfun` fixed), one JSON line each, for
tests/it/beat.rs to compare with celeriac's solar schedule. Usage: solar_cases.py SEED N
"""
import datetime
import json
import random
import sys

from celery import Celery
from celery.schedules import solar

seed, n = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)
app = Celery("cases")
events = sorted(solar._all_events)
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
for i in range(n):
    event = rnd.choice(events)
    # Most places where every event happens daily; one in five near or past the polar circles,
    # where some wait for their season.
    lat = round(rnd.uniform(-85, 85) if i % 5 == 0 else rnd.uniform(-60, 60), 4)
    lon = round(rnd.uniform(-180, 180), 4)
    now = start + datetime.timedelta(seconds=rnd.randint(0, 3 * 365 * 86400))
    s = solar(event, lat, lon, app=app, nowfun=lambda: now)
    nxt = now + s.remaining_estimate(now)
    print(json.dumps({"event": event, "lat": lat, "lon": lon, "now": now.isoformat(), "next": nxt.isoformat()}))
