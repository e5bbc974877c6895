"""Lesson 02's scenes, run for real: one or more beats with given settings, timed and recorded.

Usage (notebook 02 and `scripts/figures.py 02` call these; workers must already run)::

    >>> runs, watcher, beats = run_beat(20, "overlap", EXTRACT_EVERY=0.75, EXTRACT_SECONDS=3)
    >>> timeline.count_overlaps(runs, "tasks.data_extractor"), watcher.longest()
    (21, 10)
    >>> runs, _, beats = run_beat(6, "twobeats", beats=2, MAIL_EVERY=1)
    >>> name_senders(runs, beats)                 # run.origin: "twobeats1" or "twobeats2"

Settings are tasks.py's environment variables (MAIL_EVERY, EXTRACT_EVERY, …), given to the beats
only. Everything talks to the Redis in REDIS_URL.
"""
from __future__ import annotations

import dataclasses
import os
import time

import redis

import tasks  # noqa: F401  (the app: its timeline records every run)
from labkit import Fleet, Worker, plots, timeline
from labkit.guard import empty_queues
from labkit.observe import wait_for
from labkit.processes import Beat
from labkit.queue_watch import QueueWatcher

LAB_QUEUES = ("celery", "extract")
EXTRACTOR = "tasks.data_extractor"
# The figures run longer than the notebook (which has a presenting budget): a 3 s job sent every
# 0.75 s needs four workers; three fall behind.
SLOW = {"MAIL_EVERY": 1, "EXTRACT_EVERY": 0.75, "EXTRACT_SECONDS": 3}
QUIET = {"MAIL_EVERY": 3600, "EXTRACT_EVERY": 3600}   # entries a scene does not need


def run_beat(seconds: float, name: str, beats: int = 1, watch=("celery",),
             scheduler: str | None = None, max_interval: int | None = None, during=None,
             **settings):
    """Run `beats` beats with `settings` for `seconds` on a run of their own; stop them, empty
    the lab's queues (sent but not started: not this scene's), and return
    (the recorded runs, the queue watcher, the beats).

    `scheduler`: another scheduler class (e.g. "redbeat.RedBeatScheduler"); `max_interval`: the
    longest a beat sleeps between two checks, whole seconds (default: 1 with another scheduler,
    else beat's own); `during(beats)`: called instead of sleeping `seconds`, while the beats run.
    """
    run_id = timeline.start_run(name)
    env = {key: str(value) for key, value in settings.items()}
    max_interval = max_interval or (1 if scheduler else None)
    schedulers = [Beat(f"{name}{n}", env=env, scheduler=scheduler, max_interval=max_interval)
                  for n in range(1, beats + 1)]
    url = os.environ["REDIS_URL"]
    watcher = QueueWatcher(url, list(watch), every=0.1)
    try:
        for beat in schedulers:     # all at once: their start-ups overlap, their clocks agree
            beat.start()
        for beat in schedulers:
            beat.wait_ready()
        with watcher:
            if during:
                during(schedulers)
            else:
                time.sleep(seconds)
    finally:
        for beat in schedulers:
            beat.stop()
    client = redis.Redis.from_url(url)
    try:
        empty_queues(client, LAB_QUEUES)   # refused if they hold messages that are not ours
    finally:
        client.close()
    return timeline.wait_until_finished(run_id, timeout=30), watcher, schedulers


def run_cron(seconds: float, speedup: float = 20, cron: str = "* * * * *", **settings):
    """Beat with only the REPORT_CRON entry `cron`, its clock `speedup` times as fast, for
    `seconds`; (the runs of tasks.report, the fast clock's epoch). See `on_beats_clock`."""
    epoch = time.time()
    runs, _, _ = run_beat(seconds, "cron", REPORT_CRON=cron, CRON_SPEEDUP=speedup,
                          CRON_EPOCH=epoch, **{**QUIET, **settings})
    return [run for run in runs if run.task == "tasks.report"], epoch


def on_beats_clock(moment: float, epoch: float, speedup: float = 20) -> str:
    """`moment` (a Unix time) as beat's fast clock showed it: "HH:MM:SS.s", UTC."""
    fast = epoch + (moment - epoch) * speedup
    return time.strftime("%H:%M:%S", time.gmtime(fast)) + f"{fast % 1:.1f}"[1:]




def name_senders(runs, beats) -> None:
    """Replace each run's origin ("gen<pid>@host", the sending process) by its beat's name."""
    names = {f"gen{beat.pid}": beat.name for beat in beats}
    for run in runs:
        run.origin = names.get((run.origin or "").split("@")[0], run.origin)


# --- Figures ----------------------------------------------------------------------------------

def redbeat_failover(kill_after: float = 4.0, lock_timeout: float = 3.0, max_interval: int = 1):
    """Two redbeat beats; the active one is SIGKILLed after `kill_after` s. Returns (runs, beats,
    {"killed_at": epoch seconds, "seconds": until the standby sent its first task})."""
    failover = {}

    def kill_the_active_beat(schedulers):
        time.sleep(kill_after)
        active = next(b for b in schedulers if "Acquired lock" in b.log_text())
        standby = next(b for b in schedulers if b is not active)
        active.stop(graceful=False)
        died = time.monotonic()
        failover["killed_at"] = time.time()
        wait_for(standby.sends, what=f"a send by the standby {standby.name}")
        failover["seconds"] = time.monotonic() - died
        time.sleep(3)

    runs, _, beats = run_beat(0, "redbeat", beats=2, scheduler="redbeat.RedBeatScheduler",
                              max_interval=max_interval, during=kill_the_active_beat,
                              REDBEAT_LOCK_TIMEOUT=lock_timeout, **{**QUIET, "MAIL_EVERY": 1})
    name_senders(runs, beats)
    return runs, beats, failover


def plot_failover(runs, killed_at: float, seconds: float, lock_timeout: float = 3.0,
                  before: float | None = None):
    """The redbeat runs coloured by sender, a dotted line where the active beat was killed
    (`killed_at`, epoch seconds) and the failover `seconds` in the title. `before`: only the
    runs sent at most that many seconds before the kill (however long the beat ran before)."""
    if before is not None:
        runs = [run for run in runs if (run.sent or run.start) >= killed_at - before]
        t0 = min((run.start for run in runs), default=killed_at)
        runs = [dataclasses.replace(run, t0=t0) for run in runs]
    figure = plots.plot_timeline(
        runs, color_by="origin",
        title=f"redbeat: the active beat killed, the standby took over "
              f"{seconds:.1f} s later (lock timeout {lock_timeout:g} s)")
    killed = killed_at - runs[0].t0
    figure.axes[0].axvline(killed, color="black", linestyle=":",
                           label="active beat killed (SIGKILL)")
    figure.axes[0].text(killed, -0.62, " active beat killed", fontsize="small", va="top")
    return figure


def figures(out, save) -> None:
    """img/02_*.png: overlap, queue length, expires, dedicated queue, two beats, redbeat."""
    with Fleet(["worker1", "worker2", "worker3"]):
        runs, watch, _ = run_beat(20, "overlap", **SLOW)
        overlaps = timeline.count_overlaps(runs, EXTRACTOR)
        save(plots.plot_timeline(runs, task=EXTRACTOR,
                                 title="beat + 3 workers, 3 s job every 0.75 s"),
             out / "02_overlap.png")
        save(plots.plot_queue_length(watch, title="Three workers fall behind: the queue grows"),
             out / "02_queue_length.png")

        runs, watch, _ = run_beat(10, "expires", EXTRACT_EXPIRES=1.5, **SLOW)
        save(plots.plot_timeline(runs, task=EXTRACTOR,
                                 title="expires=1.5 s: stale runs dropped (x)"),
             out / "02_expires.png")

        with Worker("solo", pool="solo", queues=["extract"]):
            runs, watch, _ = run_beat(10, "dedicated", EXTRACT_QUEUE="extract",
                                      watch=["extract", "celery"], **SLOW)
        save(plots.plot_timeline(runs, task=EXTRACTOR, title="one solo worker on queue 'extract'"),
             out / "02_dedicated_queue.png")

        runs, _, beats = run_beat(6, "twobeats", beats=2, **{**QUIET, "MAIL_EVERY": 1})
        name_senders(runs, beats)
        save(plots.plot_timeline(runs, color_by="origin", title="two beats: every run sent twice"),
             out / "02_two_beats.png")

        runs, _, failover = redbeat_failover()
        save(plot_failover(runs, failover["killed_at"], failover["seconds"]),
             out / "02_redbeat_failover.png")
    print(f"overlapping runs of the extractor in the 20 s run: {overlaps}; "
          f"redbeat failover: {failover['seconds']:.1f} s")
