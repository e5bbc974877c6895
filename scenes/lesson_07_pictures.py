"""Lesson 07's pictures, drawn from the measurements the benchmarks saved (bench/results/07_*.json,
written by `python bench/brokers.py`, `bench/pools.py`, `bench/tuning.py`: real runs), so that the
notebook and `python scripts/figures.py 07` draw them in a second, without RabbitMQ.

Usage::

    from scenes import lesson_07_pictures as pictures
    pictures.plot_pools(pictures.load("pools"))       # a matplotlib Figure
    pictures.figures(Path("img"), save)               # img/07_brokers.png, 07_pools.png, 07_tuning.png
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "bench/results"
POOL_COLOURS = {"solo": "#777777", "prefork": "#1f77b4", "threads": "#d62728",
                "gevent": "#2ca02c", "eventlet": "#9467bd"}


def load(name: str) -> dict:
    """The saved measurement bench/results/07_<name>.json."""
    return json.loads((RESULTS / f"07_{name}.json").read_text())


def _figure(width=10, height=4.2, columns=1):
    import matplotlib.pyplot as plt
    return plt.subplots(1, columns, figsize=(width, height), squeeze=False)


def plot_brokers(result: dict):
    """Round trip p50/p99 and burst throughput, Redis beside RabbitMQ."""
    figure, axes = _figure(columns=2)
    left, right = axes[0]
    trips = result["trips_ms"]
    brokers = list(trips)
    colours = ["#d62728" if broker == "redis" else "#ff7f0e" for broker in brokers]
    for offset, percentile in ((-0.2, "p50"), (0.2, "p99")):
        left.bar([i + offset for i in range(len(brokers))], [trips[b][percentile] for b in brokers],
                 width=0.4, color=colours, alpha=1.0 if percentile == "p50" else 0.5)
    left.set_xticks(range(len(brokers)), [f"{b}\np50 | p99" for b in brokers])
    left.set_ylabel("ms, producer → worker → result")
    left.set_title("one task at a time: round trip")
    kinds = ["burst, results kept", "burst, ignore_result"]
    for number, broker in enumerate(brokers):
        rates = [statistics.median(result["found"][f"{broker} {kind}"]) for kind in kinds]
        right.bar([k + (number - 0.5) * 0.4 for k in range(len(kinds))], rates, width=0.4,
                  color=colours[number], label=broker)
    right.set_xticks(range(len(kinds)), kinds)
    right.set_ylabel("tiny tasks per second")
    right.set_title(f"a burst of {result['size']} tiny tasks")
    right.legend()
    figure.suptitle(_caption(result, "brokers, same tasks, same workers, same run"), fontsize=9)
    figure.tight_layout()
    return figure


def plot_pools(result: dict):
    """Throughput against concurrency, a line per pool: CPU-bound left, IO-bound right."""
    figure, axes = _figure(columns=2)
    for axis, kind, title in ((axes[0][0], "cpu", f"CPU-bound: {result['cpu_task']}"),
                              (axes[0][1], "io", f"IO-bound: {result['io_task']}")):
        for pool, colour in POOL_COLOURS.items():
            points = sorted((int(label.split()[2]), statistics.median(values))
                            for label, values in result["rates"].items()
                            if label.startswith(f"{kind} {pool} "))
            if points:
                axis.plot(*zip(*points), marker="o", color=colour, label=pool)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrency (processes, threads or greenlets)")
        axis.set_ylabel("tasks per second")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    figure.suptitle(_caption(result, "worker pools on 2 cores"), fontsize=9)
    figure.tight_layout()
    return figure


def plot_tuning(result: dict):
    """Each tuning step's throughput as a ratio to the defaults; the timeline's cost below."""
    figure, axes = _figure(height=4.8)
    axis = axes[0][0]
    labels = result["steps"] + result["timeline"]
    values = [result["ratios"][label] for label in labels]
    colours = ["#1f77b4"] * len(result["steps"]) + ["#7f7f7f"] * len(result["timeline"])
    axis.barh(range(len(labels)), values, color=colours)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.axvline(2.0, color="#2ca02c", linestyle="--", linewidth=0.8, label="target: 2 × defaults")
    for row, value in enumerate(values):
        axis.text(value, row, f" ×{value:.2f}", va="center", fontsize=8)
    axis.set_xlabel("throughput × the defaults' in the same round (median)")
    axis.legend(loc="lower right")
    figure.suptitle(_caption(result, f"bursts of {result['size']} tiny tasks, steps added top to "
                                     "bottom"), fontsize=9)
    figure.tight_layout()
    return figure


def _caption(result: dict, what: str) -> str:
    machine = result["machine"]
    return (f"{what} — {result['rounds']} rounds, {machine['cpus']} CPUs at load "
            f"{machine['load'][0]}, Celery {machine['celery']}, {machine['when']}")


def figures(out: Path, save) -> None:
    """img/07_*.png from the saved measurements (re-measure with `make bench`)."""
    save(plot_brokers(load("brokers")), out / "07_brokers.png")
    save(plot_pools(load("pools")), out / "07_pools.png")
    save(plot_tuning(load("tuning")), out / "07_tuning.png")
