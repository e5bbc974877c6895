"""Regenerate img/03_*.png from real runs: the lock-taking task patterns (`make figures-03`).

Usage::

    $ python scripts/figures_03.py            # about a minute and a half; writes img/03_*.png
    $ python scripts/figures_03.py --out /tmp/figs

Each picture is a before/after pair (or one run) of a `labkit.pattern_runs` demo. It always
starts its own private redis-server (a free port, nothing kept), so it never touches a Redis you
run, and real workers and beat, and stops everything it started, also on Ctrl-C.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figure_output import output_folder, save  # noqa: E402
from labkit.redis_server import RedisServer  # noqa: E402


def draw(runs, plt, out: Path) -> None:
    fig, axes = plt.subplots(3, 1, figsize=(11, 9.5))
    for ax, single in zip(axes, (False, True)):
        runs.plot_single_instance(runs.run_single_instance_demo(single, every=1, seconds=2.5,
                                                                for_seconds=8), ax=ax)
    runs.plot_single_instance(runs.run_single_instance_crash_demo(lock_ttl=3, every=1, seconds=6,
                                                                  for_seconds=8), ax=axes[2])
    fig.tight_layout()
    save(fig, out / "03_single_instance.png")

    fig, axes = plt.subplots(2, 1, figsize=(11, 6))
    for ax, locked in zip(axes, (False, True)):
        runs.plot_outbox(runs.run_outbox_demo(locked, emails=12, pause=0.5), ax=ax)
    fig.tight_layout()
    save(fig, out / "03_outbox.png")

    # dave is busy for 4 s (two 2 s runs); a task's backoffs add up to at most 0.5 + 1 + 2 s:
    # the last one in line usually gives up.
    jobs = [("dave", 2.0)] * 3 + [("alice", 2.5), ("bob", 1.0), ("bob", 1.0), ("carol", 3.0)]
    fig = runs.plot_targets(runs.run_target_demo(jobs, concurrency=3, max_retries=3,
                                                 backoff=0.5, backoff_cap=2))
    fig.tight_layout()
    save(fig, out / "03_per_target.png")


def main(argv=None) -> int:
    out = output_folder(argv, __doc__.splitlines()[0])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    server = RedisServer().start()
    os.environ["REDIS_URL"] = server.url   # before tasks.py is imported: it reads REDIS_URL once
    try:
        from labkit import pattern_runs
        draw(pattern_runs, plt, out)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
