"""Pictures of what the lab recorded: the run timeline as a Gantt chart, queue lengths over time.

Usage::

    from labkit import plots, timeline

    runs = timeline.runs(run_id)
    plots.plot_timeline(runs, task="tasks.data_extractor", path="img/02_overlap.png")
    plots.plot_queue_length(watcher, title="the queue grows")     # a labkit.queue_watch sample

Each function returns the matplotlib Figure (and writes it when given a `path`); matplotlib is
imported inside them, so importing this module costs nothing.
"""
from __future__ import annotations

import time
from pathlib import Path

from labkit.queue_watch import QueueWatcher
from labkit.timeline import Run, overlapping


def _short(task: str) -> str:
    return task.rsplit(".", 1)[-1]


def _pack(lane_runs: list[Run], end_of) -> list[list[Run]]:
    """Rows within one worker's lane: runs that overlap in time (concurrency > 1) get own rows."""
    rows: list[list[Run]] = []
    for run in sorted(lane_runs, key=lambda r: r.start):
        for row in rows:
            if end_of(row[-1]) <= run.start:
                row.append(run)
                break
        else:
            rows.append([run])
    return rows


def plot_timeline(runs: list[Run], path: str | Path | None = None, title: str | None = None,
                  task: str | None = None, color_by: str = "task", ax=None,
                  mark_overlaps: bool = True):
    """A Gantt chart of `runs`: one lane per worker, time in seconds since the first start.

    Overlapping runs of the same task (see `overlapping`) get a red hatched border; "skipped"
    runs are grey and hatched, "retried" ones have a dashed border, "stopped" ones (on request)
    are cross-hatched, "failed" ones are dark red,
    messages dropped as "expired"/"revoked" are an x above the lane of the worker that dropped
    them; grey triangles on top mark when each run was sent. `task` limits the overlap count to one
    task; `color_by` is "task" or "origin" (who sent each run: tells two beats apart);
    `mark_overlaps=False` for jobs meant to run side by side (no red borders, no count).
    Returns the matplotlib Figure; with `path`, also writes it there (PNG by the file name).
    """
    import matplotlib.pyplot as plt

    fig, ax = _figure(ax, lanes=len({run.worker for run in runs}) or 1)
    overlaps = {run.key for run in overlapping(runs, task)} if mark_overlaps else set()
    keys = sorted({getattr(run, color_by) or "?" for run in runs})
    color = {key: plt.get_cmap("tab10")(i % 10) for i, key in enumerate(keys)}
    workers = sorted({run.worker for run in runs})
    _draw_lanes(ax, runs, workers, overlaps, lambda run: color[getattr(run, color_by) or "?"])
    sent = [r.sent - r.t0 for r in runs if r.sent and task in (None, r.task) and r.attempt == 0]
    ends = [run.rel_end for run in runs if run.rel_end is not None]
    _draw_sends(ax, sent, close=max(ends + sent + [1.0]) / 100)

    ax.set_yticks(range(len(workers)), labels=[w.split("@")[0] for w in workers])
    ax.set_ylim(-0.7, len(workers) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first run started")
    ax.grid(axis="x", alpha=0.3)
    if mark_overlaps:
        what = f"overlapping runs of {_short(task)}" if task else "overlapping runs"
        ax.set_title(f"{title + ' — ' if title else ''}{len(overlaps)} {what}")
    else:
        ax.set_title(title or "")
    labels = {key: _short(key) if color_by == "task" else key for key in keys}
    handles = _legend(runs, {labels[key]: color[key] for key in keys}, bool(overlaps),
                      f"sent{' (' + _short(task) + ')' if task else ''}" if sent else None)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small",
              frameon=False)
    return _finish(fig, path)


def _figure(ax, lanes: int, width: float = 11):
    """A new figure sized for `lanes` lanes, or the one `ax` belongs to."""
    import matplotlib.pyplot as plt

    if ax is None:
        return plt.subplots(figsize=(width, 1.2 + 0.8 * lanes))
    return ax.figure, ax


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def _draw_sends(ax, sent: list[float], close: float) -> None:
    """A grey triangle per send; sends less than `close` seconds apart share one, marked ×N."""
    groups: list[list[float]] = []
    for moment in sorted(sent):
        if groups and moment - groups[-1][-1] < close:
            groups[-1].append(moment)
        else:
            groups.append([moment])
    ax.plot([group[0] for group in groups], [-0.58] * len(groups), marker="v", color="dimgrey",
            linestyle="", markersize=5)
    for group in groups:
        if len(group) > 1:
            ax.annotate(f"×{len(group)}", (group[0], -0.58), xytext=(5, 0),
                        textcoords="offset points", va="center", fontsize=7, color="dimgrey")


def _draw_lanes(ax, runs: list[Run], workers: list[str], overlaps: set, color_of) -> None:
    """One lane per worker; runs that overlap in time within a lane (concurrency > 1) get rows."""
    now = time.time()
    end_of = lambda run: run.end if run.end is not None else now  # noqa: E731
    span = max([end_of(run) for run in runs], default=1) - min([r.start for r in runs], default=0)
    min_width = max(span, 1) / 250           # a 5 ms run is still drawn as a visible sliver
    for lane, worker in enumerate(workers):
        rows = _pack([r for r in runs if r.worker == worker
                      and r.outcome not in ("expired", "revoked")], end_of)
        height = 0.8 / max(len(rows), 1)
        for row_number, row in enumerate(rows):
            bottom = lane - 0.4 + row_number * height
            for run in row:
                _draw_run(ax, run, bottom, height, color_of(run), run.key in overlaps,
                          end_of(run), min_width)
        dropped = [r.rel_start for r in runs
                   if r.worker == worker and r.outcome in ("expired", "revoked")]
        ax.plot(dropped, [lane - 0.48] * len(dropped), marker="x", color="black",
                linestyle="", markersize=7, markeredgewidth=2)


def _legend(runs: list[Run], colors: dict, overlaps: bool, sent_label: str | None) -> list:
    """Legend entries: one colour per task (or sender), then only the marks this chart uses."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=color, label=label) for label, color in colors.items()]
    if overlaps:
        handles.append(Patch(facecolor="white", edgecolor="red", hatch="///", linewidth=2,
                             label="overlaps a run of the same task"))
    if sent_label:
        handles.append(Line2D([], [], marker="v", color="dimgrey", linestyle="",
                              label=sent_label))
    outcomes_seen = {run.outcome for run in runs}
    if "skipped" in outcomes_seen:
        handles.append(Patch(facecolor="lightgrey", hatch="..", label="skipped"))
    if "retried" in outcomes_seen:
        handles.append(Patch(facecolor="white", edgecolor="darkorange", linestyle="--",
                             linewidth=2, label="retried"))
    if "stopped" in outcomes_seen:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="xx",
                             label="stopped on request"))
    if "failed" in outcomes_seen:
        handles.append(Patch(facecolor="darkred", label="failed"))
    if outcomes_seen & {"expired", "revoked"}:
        handles.append(Line2D([], [], marker="x", color="black", linestyle="",
                              label="dropped (expired)"))
    return handles


def _draw_run(ax, run: Run, bottom: float, height: float, color, overlaps: bool, end: float,
              min_width: float):
    width = max(end - run.start, min_width)
    thin = width <= min_width * 2            # a black border would hide a sliver's colour
    style = {"facecolor": color, "edgecolor": color if thin else "black", "linewidth": 0.6}
    if run.outcome == "skipped":
        style.update(facecolor="lightgrey", hatch="..")
    elif run.outcome == "failed":
        style.update(facecolor="darkred")
    elif run.outcome == "stopped":
        style.update(hatch="xx")
    elif run.outcome == "retried":
        style.update(edgecolor="darkorange", linestyle="--", linewidth=2)
    if overlaps:
        style.update(edgecolor="red", hatch="///", linewidth=2)
    if run.end is None:
        style.update(alpha=0.5)  # still running (or its process died): drawn up to now
    ax.broken_barh([(run.rel_start, width)], (bottom, height * 0.9), **style)


def plot_queue_length(watch: QueueWatcher, path: str | Path | None = None,
                      title: str | None = None, ax=None):
    """A step line per queue: messages waiting over time. Returns the matplotlib Figure."""
    fig, ax = _figure(ax, lanes=2.25)
    times = [t for t, _ in watch.samples]
    for queue in watch.queues:
        ax.step(times, [lengths[queue] for _, lengths in watch.samples], where="post",
                label=f"queue {queue!r}")
    ax.set_xlabel("seconds since the watch started")
    ax.set_ylabel("messages waiting")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title or "Queue length over time")
    return _finish(fig, path)
