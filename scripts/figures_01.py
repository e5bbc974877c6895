"""Regenerate img/01_*.png from a real run: a private Redis, three workers (`make figures-01`).

Usage::

    $ python scripts/figures_01.py            # about 15 seconds; writes img/01_*.png
    $ python scripts/figures_01.py --out /tmp/figs

The two pictures of notebook 01, from the same calls:

- `01_task_states.png`: one `data_extractor(2.0)`, its state polled every 50 ms —
  PENDING while queued, STARTED on a worker (`task_track_started=True`), then SUCCESS;
- `01_which_worker.png`: 15 `data_extractor(0.3)` jobs sent as one group to worker1..3, on the
  run timeline: each worker runs one job at a time and takes the next when it is free.

It always starts its own private redis-server (a free port, nothing kept), so it never touches
a Redis you run, and stops everything it started, also on Ctrl-C.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from figure_output import output_folder, save  # noqa: E402
from labkit import Fleet, RedisServer, timeline  # noqa: E402
from labkit.progress import poll_progress  # noqa: E402

STATES = ["PENDING", "STARTED", "SUCCESS"]


def plot_states(samples, title: str):
    figure, ax = plt.subplots(figsize=(7, 2.2))
    ax.step([t for t, _ in samples], [STATES.index(state) for _, state in samples], where="post")
    ax.set_yticks(range(len(STATES)), STATES)
    ax.set_xlabel("seconds after delay()")
    ax.set_title(title)
    figure.tight_layout()
    return figure


def main(argv=None) -> int:
    out = output_folder(argv, __doc__.splitlines()[0])

    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url
        import tasks  # after REDIS_URL: the app and the timeline connect to this server
        from celery import group

        with Fleet(["worker1", "worker2", "worker3"]):
            job = tasks.data_extractor.delay(2.0)
            samples = [(t, state) for t, state, _ in poll_progress([job], timeout=20)[job.id]]
            worker = job.result["worker"].split("@")[0]
            save(plot_states(samples, f"data_extractor(2.0) on {worker}"),
                 out / "01_task_states.png")

            run_id = timeline.start_run("01-which-worker")
            jobs = group(tasks.data_extractor.s(0.3) for _ in range(15)).apply_async()
            jobs.join(timeout=30)
            runs = timeline.wait_until_finished(run_id, timeout=30)
            per_worker = Counter(run.worker.split("@")[0] for run in runs)
            save(timeline.plot_timeline(runs, mark_overlaps=False,
                                        title="15 data_extractor(0.3) jobs, 3 workers, "
                                              "one job at a time each"),
                 out / "01_which_worker.png")
    print("jobs per worker:", dict(sorted(per_worker.items())))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
