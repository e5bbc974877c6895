"""Lesson 05a's pictures, drawn from what `scenes/lesson_05_canvas.py` runs returned.

    plot_mini(run_mini_celery())            # Mini Celery: which client ran what, when; parents → children
    plot_chord(run_chord()["runs"])         # the chord's parts side by side, the body after the last
    plot_retries(run_retries(RETRY_DEMO))   # each task's attempts and the delays between them
    plot_jitter(run_retries(jitter_demo())) # when tasks turned away together come back

Each returns a matplotlib Figure; matplotlib is imported inside them.
"""
from __future__ import annotations

from labkit.plots import plot_timeline

_MARK = {"ran": ("o", "tab:green"), "retried": ("o", "darkorange"), "failed": ("X", "darkred")}


def plot_mini(report: dict):
    """One row per Mini Celery task: when it ran (x), on which client (colour), what it returned
    (red: it raised), an arrow from each parent to its child, and when the scheduled one was due."""
    import matplotlib.pyplot as plt

    outcomes = report["outcomes"]
    labels = list(outcomes)
    clients = sorted({outcome["client"] for outcome in outcomes.values()})
    t0 = min(outcome["due"] for outcome in outcomes.values())
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.42 * len(labels)))
    where = {label: (outcome["started"] - t0, row)
             for row, (label, outcome) in enumerate(outcomes.items())}
    for label, outcome in outcomes.items():
        colour = f"C{clients.index(outcome['client'])}"
        ax.plot(*where[label], "o", color=colour, markersize=8)
        failed = "error" in outcome
        text = outcome["error"] if failed else repr(outcome["value"])
        ax.annotate(text, where[label],
                    xytext=(8, -3), textcoords="offset points", fontsize=8,
                    color="darkred" if failed else "black")
    for child, parents in report["parents"].items():
        for parent in parents:
            ax.annotate("", where[child], where[parent],
                        arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 1})
    due = outcomes["world"]["due"] - t0
    ax.axvline(due, color="tab:green", ls="--", lw=1)
    ax.annotate(f" world due at {due:.1f} s", (due, len(labels) - 0.6), fontsize=8,
                color="tab:green")
    for number, client in enumerate(clients):
        ax.plot([], [], "o", color=f"C{number}", label=f"ran on {client}")
    ax.set_yticks(range(len(labels)), labels=[label.strip() for label in labels])
    ax.set_ylim(len(labels) - 0.4, -0.6)
    ax.set_xlim(-0.1, due * 1.6 + 0.2)
    ax.set_xlabel("seconds since the tasks were submitted")
    ax.legend(loc="upper right", fontsize=8)
    looks = ", ".join(f"{name} {count}" for name, count in sorted(report["looks"].items()))
    ax.set_title(f"Mini Celery on two clients — times each looked at mini:due: {looks}")
    fig.tight_layout()
    return fig


def plot_chord(runs):
    """The run timeline of a chord: three parts on three workers, the body after the slowest."""
    return plot_timeline(runs, mark_overlaps=False,
                         title="chord(square × 3) | xsum: the body runs once the last part is in")


def plot_retries(report: dict):
    """One lane per task: each attempt (orange: failed and retried, green: succeeded, red cross:
    gave up), and the seconds from each attempt to the next, as measured."""
    import matplotlib.pyplot as plt

    label_of, runs = report["label_of"], report["runs"]
    labels = list(dict.fromkeys(label_of.values()))
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.8 * len(labels)))
    t0 = min(run.start for run in runs)
    for run in runs:
        lane = labels.index(label_of[run.task_id])
        marker, colour = _MARK.get(run.outcome, ("o", "0.5"))
        ax.plot(run.start - t0, lane, marker, color=colour, markersize=9)
    for task_id, label in label_of.items():
        starts = sorted((run.start - t0 for run in runs if run.task_id == task_id))
        for a, b in zip(starts, starts[1:]):
            ax.annotate("", (b, labels.index(label)), (a, labels.index(label)),
                        arrowprops={"arrowstyle": "->", "color": "0.6"})
            ax.annotate(f"{b - a:.1f} s", ((a + b) / 2, labels.index(label)), xytext=(0, 7),
                        textcoords="offset points", ha="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.4, -0.6)
    ax.set_xlabel("seconds since the first attempt started (run timeline)")
    ax.set_title("retries: orange = failed and retried, green = succeeded, red × = gave up")
    fig.tight_layout()
    return fig


def second_attempt_delays(report: dict) -> dict[str, list[float]]:
    """{"whole": [...], "full": [...]}: seconds from each task's first attempt to its second."""
    found: dict[str, list[float]] = {}
    for task_id, label in report["label_of"].items():
        starts = sorted(run.start for run in report["runs"] if run.task_id == task_id)
        if len(starts) > 1:
            found.setdefault(label.split()[0], []).append(starts[1] - starts[0])
    return found


def plot_jitter(report: dict):
    """When tasks turned away together come back: whole-second jitter (Celery's retry_jitter)
    against full jitter in fractions of a second (locks.patterns.backoff)."""
    import matplotlib.pyplot as plt

    delays = second_attempt_delays(report)
    rows = [("whole", "retry_jitter=True: 0 or 1 s"),
            ("full", "backoff(): anywhere in [0, 1] s")]
    fig, ax = plt.subplots(figsize=(10, 2.6))
    for row, (kind, label) in enumerate(rows):
        values = sorted(delays.get(kind, []))
        ax.plot(values, [row + 0.06 * (i % 5 - 2) for i in range(len(values))], "o",
                color=f"C{row}", alpha=0.8, markersize=8, label=label)
    ax.set_yticks(range(len(rows)), labels=[label for _, label in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("seconds from a task's first attempt to its retry")
    ax.grid(axis="x", alpha=0.3)
    count = max(len(values) for values in delays.values()) if delays else 0
    ax.set_title(f"{count} tasks turned away at once: whole seconds bring them back in waves")
    fig.tight_layout()
    return fig
