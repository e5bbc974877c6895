"""Lesson 06's pictures, from real runs: a killed worker on the timeline, prefetch hostages, a
leaking task's memory, autoscale under a burst. `python scripts/figures.py 06` writes them.

Usage (notebooks 06a/06c call the plots with their own runs)::

    >>> plot_kills([kill_mid_task(reliable=False), kill_mid_task(reliable=True)])
    >>> plot_prefetch({name: prefetch_hostages(name) for name in PREFETCH_VARIANTS})
    >>> plot_leak(leak());  plot_autoscale(autoscale_burst())
"""
from __future__ import annotations

import time

from scenes.lesson_06_kill import KillCrew, describe_kill
from scenes.lesson_06_pool import PREFETCH_VARIANTS, autoscale_burst, leak, prefetch_hostages


def plot_kills(outcomes: list, axes=None):
    """One panel per kill: the task's runs per worker (a killed run drawn up to the kill), the
    kill, the visibility timeout passing, the rescuer starting. Time from the send."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(len(outcomes), 1, figsize=(9, 1.9 * len(outcomes)), sharex=True)[1]
    axes = list(axes) if len(outcomes) > 1 else [axes]
    for ax, outcome in zip(axes, outcomes):
        lanes = [outcome.victim] + ([outcome.rescuer] if outcome.rescuer else [])
        lanes += sorted({run.worker.split("@")[0] for run in outcome.runs} - set(lanes))
        for run in outcome.runs:
            end = run.end if run.end is not None else outcome.killed
            lane = lanes.index(run.worker.split("@")[0])
            colour = "tab:red" if run.end is None else "tab:green"
            ax.broken_barh([(run.start - outcome.sent, end - run.start)], (lane - 0.3, 0.6),
                           color=colour, alpha=0.8)
        marks = [(outcome.killed, "kill -9", "-", "black"),
                 (outcome.killed + outcome.visibility_timeout, "visibility timeout", ":", "0.4")]
        if outcome.rescuer_started:
            marks.append((outcome.rescuer_started, f"{outcome.rescuer} starts", "--", "tab:blue"))
        for (moment, label, style, colour), align in zip(marks, ("left", "right", "left")):
            ax.axvline(moment - outcome.sent, color=colour, ls=style, lw=1.2)
            ax.text(moment - outcome.sent, -0.75, f" {label} ", fontsize=7, color=colour,
                    ha=align)
        ax.set_yticks(range(len(lanes)), lanes)
        ax.set_ylim(len(lanes) - 0.4, -0.8)
        task = "send_invoice_once" if outcome.idempotent else "send_invoice"
        ax.set_title(f"{outcome.settings}, {task}: " + describe_kill(outcome).split(":", 1)[1]
                     .strip(), fontsize=9)
    axes[-1].set_xlabel("seconds since the invoice task was sent (red: killed run, green: ran to "
                        "the end)")
    axes[0].figure.tight_layout()
    return axes[0].figure


def plot_prefetch(outcomes: dict, ax=None):
    """One row per setting: the long task (grey bar) and when each short task started (dots)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 0.55 * len(outcomes) + 1.2))[1]
    names = list(outcomes)
    for row, name in enumerate(names):
        outcome = outcomes[name]
        ax.broken_barh([(0, outcome.long_seconds)], (row - 0.3, 0.6), color="0.85")
        waits = outcome.short_waits
        colours = ["tab:red" if held else "tab:green" for held in outcome.held]
        ax.scatter(waits, [row] * len(waits), c=colours, s=40, zorder=3)
        ax.annotate(f"  {outcome.hostages} held", (max(waits), row), va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds each short task waited (grey: the long task; red: taken by its "
                  "worker, so run after it)")
    some = next(iter(outcomes.values()))
    ax.set_title(f"{len(some.short_waits)} short tasks sent while a {some.long_seconds:g} s task "
                 "runs; the other worker is idle")
    ax.figure.tight_layout()
    return ax.figure


def plot_leak(found: dict, ax=None):
    """Resident memory of the pool process after each task, per limit; a new pid starts a line."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 3.2))[1]
    for index, (label, points) in enumerate(found.items()):
        pids = [pid for pid, _ in points]
        ax.plot(range(1, len(points) + 1), [mib for _, mib in points], color=f"C{index}",
                marker="os^"[index % 3], ls=("-", "--", ":")[index % 3], ms=9 - 2 * index,
                label=f"{label}: {len(set(pids))} process(es)")
        for number in range(1, len(pids)):
            if pids[number] != pids[number - 1]:
                ax.annotate("new process", (number + 1, points[number][1]), fontsize=7,
                            xytext=(0, -12), textcoords="offset points", color=f"C{index}")
    ax.set_xlabel("task number (each keeps 20 MiB for good)")
    ax.set_ylabel("pool process memory (MiB)")
    ax.legend(fontsize=8)
    ax.set_title("a leaking task: the pool replaces its process after a limit")
    ax.figure.tight_layout()
    return ax.figure


def plot_autoscale(samples: dict, ax=None):
    """Pool processes and messages waiting, over time, on one chart."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 3))[1]
    ax.step(samples["t"], samples["queue"], where="post", color="tab:orange",
            label="messages waiting in the queue")
    ax.step(samples["t"], samples["pool"], where="post", color="tab:blue", lw=2.5,
            label="pool processes (--autoscale=4,1)")
    ax.set_xlabel("seconds since the burst was sent")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"a burst of tasks: the pool grows to {max(samples['pool'])}, then shrinks back "
                 f"to {samples['pool'][-1]}")
    ax.figure.tight_layout()
    return ax.figure


def figures(out, save) -> None:
    """img/06_*.png: killed workers, prefetch hostages, the leak, autoscale."""
    with KillCrew() as crew:
        kills = [crew.kill_mid_task(reliable=False), crew.kill_mid_task(reliable=True),
                 crew.kill_mid_task(reliable=True, idempotent=True)]
    save(plot_kills(kills), out / "06_killed_worker.png")
    save(plot_prefetch({name: prefetch_hostages(name) for name in PREFETCH_VARIANTS}),
         out / "06_prefetch.png")
    save(plot_leak(leak()), out / "06_leak.png")
    time.sleep(0.1)
    save(plot_autoscale(autoscale_burst()), out / "06_autoscale.png")
