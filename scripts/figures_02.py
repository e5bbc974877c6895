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
from labkit import Fleet, RedisServer, Worker, timeline  # noqa: E402
from labkit.beat_runs import name_senders, run_beat  # noqa: E402
from labkit.queue_watch import plot_queue_length  # noqa: E402

EXTRACTOR = "tasks.data_extractor"
# A 3 s job sent every 0.75 s needs four workers; three fall behind (the notebook's timings).
SLOW = {"MAIL_EVERY": 1, "EXTRACT_EVERY": 0.75, "EXTRACT_SECONDS": 3}
QUIET = {"MAIL_EVERY": 3600, "EXTRACT_EVERY": 3600}


def main(argv=None) -> int:
    out = output_folder(argv, __doc__.splitlines()[0])

    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url
        import tasks  # noqa: F401  (after REDIS_URL: it connects the timeline to this server)
        with Fleet(["worker1", "worker2", "worker3"]):
            runs, watch, _ = run_beat(20, "overlap", **SLOW)
            overlaps = timeline.count_overlaps(runs, EXTRACTOR)
            save(timeline.plot_timeline(runs, task=EXTRACTOR,
                                        title="beat + 3 workers, 3 s job every 0.75 s"),
                 out / "02_overlap.png")
            save(plot_queue_length(watch, title="Three workers fall behind: the queue grows"),
                 out / "02_queue_length.png")

            runs, watch, _ = run_beat(10, "expires", EXTRACT_EXPIRES=1.5, **SLOW)
            save(timeline.plot_timeline(runs, task=EXTRACTOR,
                                        title="expires=1.5 s: stale runs dropped (x)"),
                 out / "02_expires.png")

            with Worker("solo", pool="solo", queues=["extract"]):
                runs, watch, _ = run_beat(10, "dedicated", EXTRACT_QUEUE="extract",
                                          watch=["extract", "celery"], **SLOW)
            save(timeline.plot_timeline(runs, task=EXTRACTOR,
                                        title="one solo worker on queue 'extract'"),
                 out / "02_dedicated_queue.png")

            runs, _, beats = run_beat(6, "twobeats", beats=2,
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

            runs, _, beats = run_beat(0, "redbeat", beats=2,
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
