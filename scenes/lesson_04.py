"""Lesson 04's scenes: what one PROGRESS update costs, and the lesson's pictures.

Usage (notebook 04, tests/test_04_*.py and `scripts/figures.py 04` call these)::

    >>> cost = update_cost(tasks.fft_random, str(uuid.uuid4()))   # as if a worker reported
    >>> cost["round_trips"], cost["sends"]          # 3.0, [['GET'], ['MULTI', 'SETEX', ...], ...]
    >>> plot_spectrum(tasks.spectrum.delay(TONES, return_spectrum=True).get())
    >>> plot_progress_curves(poll_progress(results, timeout=60), workers)

Watching from the outside (polling, events, counting round trips) is plumbing, in
`labkit.observe`; what is lesson 04's own is here.
"""
from __future__ import annotations

import re
import sys
import time

import tasks
from labkit import Fleet
from labkit.observe import poll_progress, redis_round_trips
from labkit.terminal import plot_terminal, terminal_screen
from tasklib.progress import Progress

TONES = [[440, 1.0], [1000, 0.5], [2500, 0.8], [3210.5, 0.3]]


def update_cost(task, task_id: str, updates: int = 20, events: bool = True,
                busy: float = 0.0) -> dict:
    """Round trips and seconds that one PROGRESS update costs, as `Progress.report` makes it.

    Also what the task's first update costs on top, once per task ("first_sends"): opening the
    event dispatcher and the cancel subscription, and reading the cancel key. `busy`: seconds of
    FFT work before each counted update, as in the task, whose loop leaves the CPU caches cold
    for the reporting code; by default the updates run back to back, caches warm.
    """
    task.push_request(id=task_id, hostname="labkit-measure")   # as if a worker ran task_id
    seconds = cpu_seconds = 0.0
    try:
        with Progress(task, total=updates + 1, interval=0, events=events) as progress:
            with redis_round_trips() as first_sends:
                progress.report(0)   # connections opened, result key created: outside the count
            with redis_round_trips() as sends:
                for current in range(1, updates + 1):
                    _fft_work(busy)
                    started, cpu_started = time.perf_counter(), time.thread_time()
                    progress.report(current)
                    seconds += time.perf_counter() - started
                    cpu_seconds += time.thread_time() - cpu_started
    finally:
        task.pop_request()
    return {"round_trips": len(sends) / updates, "seconds": seconds / updates,
            "cpu_seconds": cpu_seconds / updates, "sends": sends[:len(sends) // updates],
            "first_sends": first_sends}


def _fft_work(seconds: float) -> None:
    if seconds > 0:
        import numpy as np
        from scipy import fft as scipy_fft

        rng, until = np.random.default_rng(), time.perf_counter() + seconds
        while time.perf_counter() < until:
            scipy_fft.fft(rng.standard_normal(tasks.FFT_SAMPLES))


def plot_spectrum(outcome: dict, ax=None):
    """The averaged spectrum, found peaks (dots) against planted tones (dashed lines)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3.6))[1]
    ax.plot(outcome["frequencies"], outcome["magnitudes"], lw=0.8, color="0.35",
            label=f"averaged over {outcome['frames']} frames")
    for index, (frequency, amplitude) in enumerate(outcome["tones"]):
        ax.axvline(frequency, color="tab:blue", ls="--", lw=1, alpha=0.7,
                   label="planted tones" if index == 0 else None)
    found = outcome["peaks"]
    ax.plot([f for f, _ in found], [m for _, m in found], "o", color="tab:red", ms=7,
            mfc="none", mew=2, label="peaks found by the task")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("magnitude (tone amplitude units)")
    ax.set_title(f"spectrum task: {len(found)} peaks found, bin width {outcome['bin_width']:.2f} Hz")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_progress_curves(trace: dict, workers: dict, ax=None, title: str | None = None):
    """Percent done over time, one line per task, coloured by the worker that ran it."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3.8))[1]
    colours = {name: f"C{index}" for index, name in enumerate(sorted(set(workers.values())))}
    labelled = set()
    for task_id, points in trace.items():
        seconds = [t for t, _, _ in points]
        percent = [p if p is not None else 0.0 for _, _, p in points]
        worker = workers.get(task_id, "?")
        ax.plot(seconds, percent, color=colours.get(worker, "0.5"), lw=1.8,
                label=worker.split("@")[0] if worker not in labelled else None)
        labelled.add(worker)
    ax.set_xlabel("seconds since the tasks were sent")
    ax.set_ylabel("percent done (PROGRESS meta)")
    ax.set_ylim(-3, 112)
    ax.set_title(title or f"{len(trace)} tasks on {len(colours)} workers: flat at 0 % = queued")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=labels.__getitem__)
    ax.legend([handles[i] for i in order], [labels[i] for i in order], title="ran on",
              loc="lower right", fontsize=8)
    return ax


def plot_update_cost(outcomes: dict, ax=None):
    """Seconds of the same FFT loop without progress, throttled, and after every round."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 2.6))[1]
    names = list(outcomes)
    seconds = [outcomes[name]["seconds"] for name in names]
    ax.barh(names, seconds, color=["0.6", "tab:green", "tab:red"][:len(names)])
    for row, name in enumerate(names):
        ax.annotate(f"  {outcomes[name]['updates']} updates", (seconds[row], row), va="center",
                    fontsize=8)
    rounds = outcomes[names[0]]["rounds"]
    ax.set_xlabel(f"seconds for the same {rounds} FFT rounds (3 Redis round trips per update)")
    ax.set_xlim(0, max(seconds) * 1.25)
    ax.invert_yaxis()
    ax.set_title("the cost of progress: report by time, not by count")
    return ax


def figures(out, save) -> None:
    """img/04_*.png: the spectrum, six tasks on three workers, the invoker's bars, update cost."""
    with Fleet(["worker1", "worker2", "worker3"], concurrency=1):
        outcome = tasks.spectrum.delay(TONES, frames=300, seed=4,
                                       return_spectrum=True).get(timeout=120)
        save(_tight(plot_spectrum(outcome).figure), out / "04_spectrum.png")

        results = [tasks.fft_random.delay(40_000, seed=i) for i in range(6)]
        trace = poll_progress(results, timeout=300)
        workers = {result.id: result.worker for result in results}
        save(_tight(plot_progress_curves(trace, workers).figure),
             out / "04_progress_6_tasks_3_workers.png")

        command = ["python", "invoker.py", "fft", "60000", "--tasks", "4"]
        lines = terminal_screen([sys.executable, *command[1:]], snapshot_when=lambda lines: sum(
            bool(re.search(r" [4-7]\d%\|", line)) for line in lines) >= 3)
        save(plot_terminal(lines, "$ " + " ".join(command) + "     # 3 workers: "
                           "three tasks run, the fourth waits in the queue"),
             out / "04_terminal_bars.png")

        runs = {"no progress": {"report": False}, "every 0.2 s": {},
                "after every round": {"interval": 0}}
        outcomes = {name: tasks.fft_random.delay(3000, **options).get(timeout=120)
                    for name, options in runs.items()}
        save(_tight(plot_update_cost(outcomes).figure), out / "04_update_cost.png")


def _tight(figure):
    figure.tight_layout()
    return figure
