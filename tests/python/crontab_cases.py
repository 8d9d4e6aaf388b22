"""Random crontab specs and instants with the next fire time Python Celery 5.7 computes
(`crontab.remaining_estimate(last_run_at=now)` with `nowfun` fixed), one JSON line each, for
tests/it/beat.rs to compare with celeriac's crontab. Usage: crontab_cases.py SEED N
"""
import datetime
import json
import random
import sys
import zoneinfo

from celery import Celery
from celery.schedules import crontab

seed, n = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)
DOW = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MON = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def field(lo, hi, names=None):
    """One field in Celery's syntax over lo..hi."""
    def num():
        v = rnd.randint(lo, hi)
        return names[v - lo] if names and rnd.random() < 0.3 else str(v)
    k = rnd.random()
    if k < 0.3:
        return "*"
    if k < 0.45:
        return f"*/{rnd.randint(1, max(1, (hi - lo) // 2))}"
    if k < 0.65:
        a, b = sorted(rnd.sample(range(lo, hi + 1), 2))
        return f"{a}-{b}" + (f"/{rnd.randint(1, 3)}" if rnd.random() < 0.3 else "")
    if k < 0.85:
        return ",".join(num() for _ in range(rnd.randint(1, 3)))
    return num()


for tzname in ["UTC", "Europe/Paris", "America/New_York"]:
    # An app per timezone: `app.timezone` is read once and cached.
    app = Celery("cases", timezone=tzname)
    tz = zoneinfo.ZoneInfo(tzname)
    for _ in range(n):
        spec = {"minute": field(0, 59), "hour": field(0, 23), "day_of_week": field(0, 6, DOW),
                # Day of month and month are restricted less often: Celery ANDs them with the weekday.
                "day_of_month": field(1, 28) if rnd.random() < 0.3 else "*",
                "month_of_year": field(1, 12, MON) if rnd.random() < 0.3 else "*"}
        start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
        now = (start + datetime.timedelta(seconds=rnd.randint(0, 3 * 365 * 86400))).astimezone(tz)
        c = crontab(**spec, app=app, nowfun=lambda: now)
        nxt = now.astimezone(datetime.timezone.utc) + c.remaining_estimate(now)
        print(json.dumps({"tz": tzname, "spec": spec, "now": now.isoformat(), "next": nxt.isoformat()}))
