"""Regenerate img/02_*.png from real runs: a private Redis, three workers, beat (`make figures`).

Usage::

    $ python scripts/figures_02.py            # about a minute; writes img/02_*.png
    $ python scripts/figures_02.py --out /tmp/figs

It always starts its own private redis-server (a free port, nothing kept), so it never touches
a Redis you run, and stops everything it started, also on Ctrl-C.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from figure_output import output_folder, save  # noqa: E402
from labkit import Beat, Fleet, RedisServer, Worker, timeline  # noqa: E402
from labkit.queue_watch import QueueWatcher, plot_queue_length  # noqa: E402

EXTRACTOR = "tasks.data_extractor"
# A 3 s job sent every 0.75 s needs four workers; three fall behind (the notebook's timings).
SLOW = {"MAIL_EVERY": 1, "EXTRACT_EVERY": 0.75, "EXTRACT_SECONDS": 3}
QUIET = {"MAIL_EVERY": 3600, "EXTRACT_EVERY": 3600}


def run_beat(client, seconds: float, name: str, beats: int = 1, watch_queues=None,
             scheduler=None, during=None, **settings):
    """Run `beats` beats with `settings` for `seconds` on a fresh run; return (runs, watcher)."""
    env = {key: str(value) for key, value in settings.items()}
    run_id = timeline.start_run(name)
    schedulers = [Beat(f"{name}{n}", env=env, scheduler=scheduler,
                       max_interval=1 if scheduler else None) for n in range(1, beats + 1)]
    watch = QueueWatcher(os.environ["REDIS_URL"], watch_queues or ["celery"])
    try:
        for beat in schedulers:
            beat.start().wait_ready()
        with watch:
            if during:
                during(schedulers)
            else:
                time.sleep(seconds)
    finally:
        for beat in schedulers:
            beat.stop()
    client.delete("celery", "extract")
    return timeline.wait_until_finished(run_id, timeout=30), watch, schedulers


def name_senders(runs, schedulers) -> None:
    """Replace each run's origin ("gen<pid>@host") by the name of the beat that sent it."""
    names = {f"gen{beat.pid}": beat.name for beat in schedulers}
    for run in runs:
        run.origin = names.get((run.origin or "").split("@")[0], run.origin)


def main(argv=None) -> int:
    out = output_folder(argv, __doc__.splitlines()[0])

    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url
        import tasks  # noqa: F401  (after REDIS_URL: it connects the timeline to this server)
        client = tasks.db()
        with Fleet(["worker1", "worker2", "worker3"]):
            runs, watch, _ = run_beat(client, 20, "overlap", **SLOW)
            overlaps = timeline.count_overlaps(runs, EXTRACTOR)
            save(timeline.plot_timeline(runs, task=EXTRACTOR,
                                        title="beat + 3 workers, 3 s job every 0.75 s"),
                 out / "02_overlap.png")
            save(plot_queue_length(watch, title="Three workers fall behind: the queue grows"),
                 out / "02_queue_length.png")

            runs, watch, _ = run_beat(client, 10, "expires", EXTRACT_EXPIRES=1.5, **SLOW)
            save(timeline.plot_timeline(runs, task=EXTRACTOR,
                                        title="expires=1.5 s: stale runs dropped (x)"),
                 out / "02_expires.png")

            with Worker("solo", pool="solo", queues=["extract"]):
                runs, watch, _ = run_beat(client, 10, "dedicated", EXTRACT_QUEUE="extract",
                                          watch_queues=["extract", "celery"], **SLOW)
            save(timeline.plot_timeline(runs, task=EXTRACTOR,
                                        title="one solo worker on queue 'extract'"),
                 out / "02_dedicated_queue.png")

            runs, _, beats = run_beat(client, 6, "twobeats", beats=2,
                                      **{**QUIET, "MAIL_EVERY": 1})
            name_senders(runs, beats)
            save(timeline.plot_timeline(runs, color_by="origin",
                                        title="two beats: every run sent twice"),
                 out / "02_two_beats.png")

            failover = {}

            def kill_the_active_beat(schedulers):
                time.sleep(4)
                active = next(b for b in schedulers if "Acquired lock" in b.log_text())
                standby = next(b for b in schedulers if b is not active)
                active.stop(graceful=False)
                died = time.monotonic()
                failover["killed_at"] = time.time()
                deadline = died + 30
                while not standby.sends() and time.monotonic() < deadline:
                    time.sleep(0.1)
                failover["seconds"] = time.monotonic() - died
                time.sleep(3)

            runs, _, beats = run_beat(client, 0, "redbeat", beats=2,
                                      scheduler="redbeat.RedBeatScheduler",
                                      during=kill_the_active_beat, REDBEAT_LOCK_TIMEOUT=3,
                                      **{**QUIET, "MAIL_EVERY": 1})
            name_senders(runs, beats)
            figure = timeline.plot_timeline(
                runs, color_by="origin",
                title=f"redbeat: the active beat killed, the standby took over "
                      f"{failover['seconds']:.1f} s later (lock timeout 3 s)")
            figure.axes[0].axvline(failover["killed_at"] - runs[0].t0, color="black",
                                   linestyle=":", label="active beat killed (SIGKILL)")
            figure.axes[0].text(failover["killed_at"] - runs[0].t0, -0.62, " active beat killed",
                                fontsize="small", va="top")
            save(figure, out / "02_redbeat_failover.png")
    print(f"overlapping runs of the extractor in the 20 s run: {overlaps}; "
          f"redbeat failover: {failover['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
