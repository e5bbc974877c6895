"""Lesson 02's scenes, run for real: one or more beats with given settings, timed and recorded.

Usage (notebook 02 and scripts/figures_02.py call these; workers must already run)::

    >>> runs, watcher, beats = run_beat(20, "overlap", EXTRACT_EVERY=0.75, EXTRACT_SECONDS=3)
    >>> timeline.count_overlaps(runs, "tasks.data_extractor"), watcher.longest()
    (21, 10)
    >>> runs, _, beats = run_beat(6, "twobeats", beats=2, MAIL_EVERY=1)
    >>> name_senders(runs, beats)                 # run.origin: "twobeats1" or "twobeats2"

Settings are tasks.py's environment variables (MAIL_EVERY, EXTRACT_EVERY, …), given to the beats
only. Everything talks to the Redis in REDIS_URL.
"""
from __future__ import annotations

import os
import time

import redis

from labkit import timeline
from labkit.processes import Beat
from labkit.queue_watch import QueueWatcher

LAB_QUEUES = ("celery", "extract")


def run_beat(seconds: float, name: str, beats: int = 1, watch=("celery",),
             scheduler: str | None = None, during=None, **settings):
    """Run `beats` beats with `settings` for `seconds` on a run of their own; stop them, empty
    the lab's queues (sent but not started: not this scene's), and return
    (the recorded runs, the queue watcher, the beats).

    `scheduler`: another scheduler class (e.g. "redbeat.RedBeatScheduler", checked every second);
    `during(beats)`: called instead of sleeping `seconds`, while the beats run.
    """
    run_id = timeline.start_run(name)
    env = {key: str(value) for key, value in settings.items()}
    schedulers = [Beat(f"{name}{n}", env=env, scheduler=scheduler,
                       max_interval=1 if scheduler else None) for n in range(1, beats + 1)]
    url = os.environ["REDIS_URL"]
    watcher = QueueWatcher(url, list(watch))
    try:
        for beat in schedulers:
            beat.start().wait_ready()
        with watcher:
            if during:
                during(schedulers)
            else:
                time.sleep(seconds)
    finally:
        for beat in schedulers:
            beat.stop()
    client = redis.Redis.from_url(url)
    client.delete(*LAB_QUEUES)
    client.close()
    return timeline.wait_until_finished(run_id, timeout=30), watcher, schedulers


def name_senders(runs, beats) -> None:
    """Replace each run's origin ("gen<pid>@host", the sending process) by its beat's name."""
    names = {f"gen{beat.pid}": beat.name for beat in beats}
    for run in runs:
        run.origin = names.get((run.origin or "").split("@")[0], run.origin)
