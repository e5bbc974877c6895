"""Schedules by the clock: a crontab from a five-field cron line, on a clock that can run fast.

Usage (`tasks.py` builds beat's "report" entry this way)::

    schedule = cron_schedule("0 13 * * *")              # every day at 13:00 (beat's time zone)
    schedule = cron_schedule("* * * * *", speedup=10)   # every minute, a minute every 6 s

The fields are in cron's order — minute, hour, day of month, month, day of week — which is not
the order of `celery.schedules.crontab`'s arguments: this function maps them by name.

`speedup` makes beat's clock for this entry run faster than the wall clock, from `epoch` (a Unix
time; default: when the process started), through crontab's own `nowfun` parameter. It exists
so that a lesson can show an entry fire "every minute at second 0" several times within seconds;
in production leave it at 1. Beat only looks at the entry when it wakes: with a speedup, give it
a short `--max-interval` (0.1 s for 10×), or it fires late on the fast clock.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import partial

from celery.schedules import crontab

FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
STARTED = time.time()


def fast_clock(speedup: float, epoch: float) -> datetime:
    """Now, on a clock that has run `speedup` times as fast as the wall clock since `epoch`."""
    now = time.time()
    return datetime.fromtimestamp(epoch + (now - epoch) * speedup, tz=timezone.utc)


def cron_schedule(line: str, speedup: float = 1.0, epoch: float | None = None) -> crontab:
    """A crontab for the five-field cron `line`; a ValueError naming the line if it is not one."""
    fields = line.split()
    if len(fields) != len(FIELDS):
        raise ValueError(f"{line!r} is not a cron line: it needs 5 fields (minute hour "
                         "day-of-month month day-of-week), e.g. '0 13 * * *'")
    nowfun = None if speedup == 1 else partial(fast_clock, speedup, STARTED if epoch is None
                                               else epoch)
    try:
        return crontab(**dict(zip(FIELDS, fields)), nowfun=nowfun)
    except ValueError as error:
        raise ValueError(f"{line!r} is not a cron line: {error}") from None
