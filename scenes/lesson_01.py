"""Lesson 01's scenes: a task's states over time, and which worker ran which job.

Usage (workers must already run; notebook 01 and `scripts/figures.py 01` call these)::

    >>> samples, worker = task_states(seconds=2.0)     # [(seconds after delay(), state), ...]
    >>> runs = which_worker(jobs=15, seconds=0.3)       # the run timeline of 15 jobs in a group
"""
from __future__ import annotations

from collections import Counter

import tasks
from labkit import Fleet, plots, timeline
from labkit.observe import poll_progress

STATES = ["PENDING", "STARTED", "SUCCESS"]


def task_states(seconds: float = 2.0) -> tuple[list, str]:
    """One `data_extractor(seconds)`, its state polled every 50 ms: ([(t, state)], worker name)."""
    job = tasks.data_extractor.delay(seconds)
    samples = [(t, state) for t, state, _ in poll_progress([job], timeout=20 + seconds)[job.id]]
    return samples, job.result["worker"].split("@")[0]


def which_worker(jobs: int = 15, seconds: float = 0.3) -> list:
    """`jobs` data_extractor(seconds) sent as one group; their runs on the timeline."""
    from celery import group

    run_id = timeline.start_run("01-which-worker")   # every worker records its runs under this id
    sent = group(tasks.data_extractor.s(seconds) for _ in range(jobs)).apply_async()
    sent.join(timeout=30)
    return timeline.wait_until_finished(run_id, timeout=30)


def jobs_per_worker(runs) -> dict[str, int]:
    return dict(sorted(Counter(run.worker.split("@")[0] for run in runs).items()))


def plot_states(samples, title: str, ax=None):
    """PENDING → STARTED → SUCCESS as a step line over time."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 2.2)) if ax is None else (ax.figure, ax)
    ax.step([t for t, _ in samples], [STATES.index(state) for _, state in samples], where="post")
    ax.set_yticks(range(len(STATES)), STATES)
    ax.set_xlabel("seconds after delay()")
    ax.set_title(title)
    figure.tight_layout()
    return figure


def figures(out, save) -> None:
    """img/01_parts.png (a drawing), and from a run on three one-process workers
    img/01_task_states.png and img/01_which_worker.png."""
    save(draw_the_parts(), out / "01_parts.png")
    with Fleet(["worker1", "worker2", "worker3"]):
        samples, worker = task_states(2.0)
        save(plot_states(samples, f"data_extractor(2.0) on {worker}"), out / "01_task_states.png")
        runs = which_worker(15, 0.3)
        save(plots.plot_timeline(runs, mark_overlaps=False,
                                 title="15 data_extractor(0.3) jobs, 3 workers, "
                                       "one job at a time each"),
             out / "01_which_worker.png")
    print("jobs per worker:", jobs_per_worker(runs))


def draw_the_parts(ax=None):
    """The four parts and the two Redis keys between them: producer → list `celery` → worker →
    key `celery-task-meta-<id>` → producer. A drawing, not a run."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(10, 2.6)) if ax is None else (ax.figure, ax)
    boxes = [(0.1, "producer", "this notebook,\npython invoker.py", "tab:blue"),
             (0.37, "broker", "Redis list 'celery'\n(one JSON message per call)", "tab:red"),
             (0.63, "worker", "celery -A tasks worker\nruns the function", "tab:green"),
             (0.9, "result backend", "Redis key\n'celery-task-meta-<id>'\n(state, return value)",
              "tab:purple")]
    for x, title, detail, colour in boxes:
        ax.text(x, 0.62, title, ha="center", va="center", fontsize=11, weight="bold",
                bbox={"boxstyle": "round,pad=0.5", "facecolor": "white", "edgecolor": colour,
                      "linewidth": 2})
        ax.text(x, 0.25, detail, ha="center", va="center", fontsize=8.5, color="0.25")
    arrow = {"arrowstyle": "-|>", "color": "0.3", "linewidth": 1.5}
    for x1, x2, label in [(0.1, 0.37, "delay(): LPUSH"), (0.37, 0.63, "BRPOP"),
                          (0.63, 0.9, "SETEX + PUBLISH")]:
        ax.annotate("", xy=(x2 - 0.085, 0.62), xytext=(x1 + 0.085, 0.62), arrowprops=arrow)
        ax.text((x1 + x2) / 2, 0.72, label, ha="center", fontsize=8)
    ax.annotate("", xy=(0.1, 0.9), xytext=(0.9, 0.9),
                arrowprops={**arrow, "connectionstyle": "arc3,rad=0"})
    ax.text(0.5, 0.95, "result.get(): GET (and SUBSCRIBE while waiting)", ha="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0.05, 1.02)
    ax.axis("off")
    figure.tight_layout()
    return figure
