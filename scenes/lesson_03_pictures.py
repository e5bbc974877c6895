"""Lesson 03's pictures: the lock stories (who believed it held the lock when, and its writes),
and the runs of the task patterns.

Usage (notebooks 03a, 03b and 03c; `scenes.lesson_03_patterns` re-exports the plot_* of its runs)::

    >>> plot_story(steps.show_d(url).events, title="d · a paused holder deletes B's lock")
    >>> plot_single_instance(report)   # plot_outbox, plot_targets: a run_*_demo report each
"""
from __future__ import annotations

from pathlib import Path

from labkit import plots

MARKERS = {  # what → (marker, colour, label)
    "wrote": ("o", "tab:green", "write accepted"),
    "write refused": ("X", "tab:red", "write refused"),
    "refused": ("x", "tab:gray", "lock refused"),
    "gave up": ("x", "tab:gray", "lock refused"),
    "killed": ("X", "black", "SIGKILL"),
}


def plot_story(events: list[dict], ax=None, title: str = ""):
    """One lane per process: when it believed it held the lock, when it was paused, its writes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _figure, ax = plt.subplots(figsize=(9, 0.6 + 0.55 * len({e["who"] for e in events})))
    start = min(e["t"] for e in events)
    end = max(e["t"] for e in events)
    ms = lambda t: (t - start) * 1000  # noqa: E731
    lanes = sorted({e["who"] for e in events}, reverse=True)
    labelled = set()  # each legend entry once
    for lane, who in enumerate(lanes):
        mine = [e for e in events if e["who"] == who]
        for begin, finish in _spans(mine, "asks", ("acquired", "gave up"), end):
            ax.barh(lane, ms(finish) - ms(begin), left=ms(begin), height=0.12, color="tab:gray",
                    label=None if "waits" in labelled else "waits for the lock")
            labelled.add("waits")
        for begin, finish in _spans(mine, "acquired", ("released", "killed"), end):
            ax.barh(lane, ms(finish) - ms(begin), left=ms(begin), height=0.5, color="tab:blue",
                    alpha=0.75, label=None if "holds" in labelled else "believes it holds the lock")
            labelled.add("holds")
        for begin, finish in _spans(mine, "paused", ("resumed",), end):
            ax.barh(lane, ms(finish) - ms(begin), left=ms(begin), height=0.5, fill=False,
                    hatch="///", edgecolor="tab:orange",
                    label=None if "paused" in labelled else "paused (SIGSTOP)")
            labelled.add("paused")
        for event in mine:
            if event["what"] == "acquired" and event.get("ttl"):
                x = ms(event["t"]) + event["ttl"]
                ax.plot([x, x], [lane - 0.4, lane + 0.4], color="tab:purple", linewidth=3,
                        label=None if "lease" in labelled else "its lease ends (TTL)")
                labelled.add("lease")
            if event["what"] in MARKERS:
                marker, colour, label = MARKERS[event["what"]]
                ax.scatter(ms(event["t"]), lane, marker=marker, color=colour, s=90, zorder=3,
                           label=None if label in labelled else label)
                labelled.add(label)
    ax.set_yticks(range(len(lanes)), [f"process {who}" for who in lanes])
    ax.set_xlabel("ms since the first event")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.figure.tight_layout()
    return ax


def _spans(events: list[dict], opened: str, closed, end: float) -> list[tuple]:
    spans, begin = [], None
    for event in sorted(events, key=lambda e: e["t"]):
        if event["what"] == opened:
            begin = event["t"]
        elif event["what"] in closed and begin is not None:
            spans.append((begin, event["t"]))
            begin = None
    if begin is not None:
        spans.append((begin, end))
    return spans


# --- The task patterns' runs (scenes/lesson_03_patterns.py reports) ---------------------------

def plot_single_instance(report: dict, ax=None, path=None):
    """Lesson 02's timeline picture of the run: one lane per worker, overlaps and skips marked."""
    title = report.get("title") or ("single instance" if report["single_instance"] else "no lock")
    return plots.plot_timeline(report["runs"], path=path, title=title, ax=ax)


def _axes(ax, lanes: int):
    import matplotlib.pyplot as plt

    if ax is None:
        return plt.subplots(figsize=(11, 1.4 + 0.7 * lanes))
    return ax.figure, ax


def _finish(fig, ax, lanes: list[str], path):
    ax.set_yticks(range(len(lanes)), labels=lanes)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first run started")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def plot_outbox(report: dict, ax=None, path=None):
    """One lane per worker, one bar per send task labelled with the email it sent; red: an
    email that more than one task sent."""
    runs = [run for run in report["runs"] if run.end is not None]
    message_of = report["message_of"]
    twice = set(report["sent_more_than_once"])
    workers = sorted({run.worker for run in runs})
    fig, ax = _axes(ax, len(workers))
    labelled = set()
    for run in runs:
        message = message_of.get(run.task_id)
        kind = "sent more than once" if message in twice else "sent once"
        color = "tab:red" if message in twice else "tab:green"
        lane = workers.index(run.worker)
        ax.broken_barh([(run.rel_start, run.duration)], (lane - 0.35, 0.7), facecolor=color,
                       edgecolor="black", linewidth=0.6,
                       label=None if kind in labelled else kind)
        labelled.add(kind)
        ax.text(run.rel_start + run.duration / 2, lane, f"#{int(message)}" if message else "—",
                ha="center", va="center", fontsize=8, color="white")
    how = "with the lock (a bar includes its wait for the lock)" if report["locked"] \
        else "without a lock"
    ax.set_title(f"outbox {how}: {len(twice)} emails sent more than once, "
                 f"{report['pending']} never sent")
    return _finish(fig, ax, [worker.split("@")[0] for worker in workers], path)


def plot_targets(report: dict, ax=None, path=None):
    """One lane per target: runs of a target side by side in time, never on top of each other.
    Bars are runs (one colour per task), circles the attempts that found the target busy and
    retried later, crosses the tasks that gave up after max_retries."""
    import matplotlib.pyplot as plt

    runs = report["runs"]
    target_of = report["target_of"]
    targets = list(dict.fromkeys(job["target"] for job in report["jobs"]))
    color = {job["task_id"]: plt.get_cmap("tab10")(number % 10)
             for number, job in enumerate(report["jobs"])}
    fig, ax = _axes(ax, len(targets))
    _seen: set = set()   # legend entries already made
    for run in runs:
        lane = targets.index(target_of[run.task_id])
        if run.outcome == "ran":
            kind = "ran (one colour per task)"
            ax.broken_barh([(run.rel_start, run.duration)], (lane - 0.3, 0.6),
                           facecolor=color[run.task_id], edgecolor="black", linewidth=0.6,
                           label=None if kind in _seen else kind)
        elif run.outcome == "retried":
            kind = "target busy: retry later"
            ax.plot([run.rel_start], [lane], "o", markerfacecolor="white",
                    markeredgecolor=color[run.task_id], markersize=7,
                    label=None if kind in _seen else kind)
        else:
            kind = f"gave up after {report['max_retries']} retries"
            ax.plot([run.rel_start], [lane], "x", color="darkred", markersize=9,
                    markeredgewidth=2, label=None if kind in _seen else kind)
        _seen.add(kind)
    retries = sum(run.outcome == "retried" for run in runs)
    gave_up = sum(run.outcome == "failed" for run in runs)
    ax.set_title(f"one task per target at a time: {retries} retries with backoff, "
                 f"{gave_up} gave up")
    return _finish(fig, ax, targets, path)
