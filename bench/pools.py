"""Worker pools side by side: prefork, threads, solo, gevent and eventlet, on a CPU-bound task and
an IO-bound one, across concurrency levels.

Usage::

    $ python bench/pools.py               # about four minutes
    $ python bench/pools.py --short       # the test's mode

One private Redis, one worker per pool and concurrency level, all started at once, each on a queue
of its own. Round after round, in a new random order (the first round a warm-up), each worker gets
a batch as a group and the time until every result is in gives tasks per second:

- CPU-bound: CPU_TASKS × `fft_random(ROUNDS, report=False)`, lesson 04's FFT loop;
- IO-bound: 2 × concurrency (at least 4) × `io_wait(0.5)`, a wait on a local socket.

Each is shown as a ratio to the solo pool (one task at a time) in the same round, median over
rounds. The brown-bag talk's rule of thumb, checked: processes for CPU-bound work (threads share
one GIL; green threads one thread), gevent or eventlet for IO-bound work. Without --short the
result is saved to bench/results/07_pools.json (the notebook draws it).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import run_and_report  # noqa: E402  (bench/common.py)


SAVED = ROOT / "bench/results/07_pools.json"
CPU_TASKS, ROUNDS, IO_SECONDS = 4, 10_000, 0.5   # an FFT task of 0.3-0.8 s: the work, not overhead
FULL = {"cpu": [1, 2, 4], "io": [1, 4, 16, 64]}
SHORT = {"cpu": [2], "io": [4]}
MAX_PROCESSES = 16     # prefork at 64 would be 64 processes of ~60 MB each: left out


def pools() -> list[str]:
    """The pools to compare: gevent and eventlet only where they are installed."""
    return ["solo", "prefork", "threads"] + [name for name in ("gevent", "eventlet")
                                              if importlib.util.find_spec(name)]


def workers_needed(levels: dict) -> list[tuple[str, int]]:
    needed = {("solo", 1)}
    for pool in pools():
        if pool == "solo":
            continue
        for kind, counts in levels.items():
            for count in counts:
                if pool == "prefork" and count > MAX_PROCESSES:
                    continue
                if pool in ("gevent", "eventlet") and kind == "cpu" and count == 2:
                    continue   # one thread whatever the count: 1 and 4 say it
                needed.add((pool, count))
    return sorted(needed)


def measure(levels: dict, rounds: int, warmup: bool) -> dict:
    import tasks
    from scenes import lesson_07_runs as runs

    setups = {(pool, count): runs.Setup(f"{pool}{count}", pool=pool, concurrency=count)
              for pool, count in workers_needed(levels)}
    cases = {}
    for (pool, count), setup in setups.items():
        if count in levels["cpu"] or pool == "solo":
            cases[f"cpu {pool} {count}"] = lambda s=setup: runs.batch(s, [tasks.fft_random.s(
                ROUNDS, report=False, seed=seed) for seed in range(CPU_TASKS)])[0]
        if count in levels["io"] or pool == "solo":
            tasks_io = max(4, 2 * count)
            cases[f"io {pool} {count}"] = lambda s=setup, n=tasks_io: runs.batch(
                s, [tasks.io_wait.s(IO_SECONDS)] * n)[0]
    one_slot_setups, one_slot = one_slot_cases(runs, tasks) if levels is FULL else ({}, {})
    with runs.started(list(setups.values()) + list(one_slot_setups.values()), timeout=180):
        found = runs.interleaved(cases, rounds, warmup=warmup)
        per_task = {label: statistics.median(seconds) for label, seconds
                    in runs.interleaved(one_slot, rounds, warmup=warmup).items()}
    ratios = {}
    for kind in ("cpu", "io"):
        kind_found = {label: values for label, values in found.items() if label.startswith(kind)}
        ratios.update(runs.ratios(kind_found, f"{kind} solo 1"))
    return {"levels": levels, "rounds": rounds, "cpu_task": f"fft_random({ROUNDS}) ×{CPU_TASKS}",
            "io_task": f"io_wait({IO_SECONDS})", "machine": runs.machine(), "rates": found,
            "ratios": ratios, "one_slot_seconds_per_task": per_task}


def one_slot_cases(runs, tasks) -> tuple[dict, dict]:
    """Green pools at concurrency 1 ran about one task per 1.5-2 s, whatever the task: one worker
    each with the lessons' prefetch multiplier (1: one message at a time) and with 32, the same
    4 × io_wait(0.1) to each; seconds per task. (Celery runs green pools without its event loop;
    with its one slot taken, the consumer waits out its 2 s `drain_events` poll before it takes
    the next message, however early the task ended: see README, Pools.)"""
    setups, cases = {}, {}
    for pool in pools():
        if pool in ("gevent", "eventlet"):
            for tuning, multiplier in (("", 1), ("prefetch", 32)):
                setup = runs.Setup(f"{pool}1-prefetch{multiplier}", pool=pool, concurrency=1,
                                   tuning=tuning)
                setups[setup.label] = setup
                cases[f"{pool} 1, prefetch multiplier {multiplier}"] = (
                    lambda s=setup: 1 / runs.batch(s, [tasks.io_wait.s(0.1)] * 4)[0])
    return setups, cases


def report(result: dict) -> str:
    from scenes import lesson_07_runs as runs
    rows = []
    for label in sorted(result["rates"], key=lambda l: (l.split()[0], l.split()[1] != "solo",
                                                         l.split()[1], int(l.split()[2]))):
        kind, pool, count = label.split()
        rows.append([kind.upper(), pool, count,
                     f"{statistics.median(result['rates'][label]):.1f}",
                     f"{result['ratios'][label]:.2f}"])
    return (f"Pools: CPU-bound {result['cpu_task']}, IO-bound {result['io_task']} × 2 per slot, "
            f"{result['rounds']} rounds interleaved\n{runs.describe(result['machine'])}\n\n"
            + runs.table(["work", "pool", "concurrency", "tasks/s (median)", "× solo"], rows)
            + "\n\n" + rule_of_thumb(result) + one_slot_report(result))


def one_slot_report(result: dict) -> str:
    per_task = result.get("one_slot_seconds_per_task") or {}
    return "".join(f"\none slot: {label}: {seconds:.2f} s per io_wait(0.1)"
                   for label, seconds in per_task.items())


def rule_of_thumb(result: dict) -> str:
    """The talk's rule, checked against the ratios: one line each for CPU and IO."""
    ratio = result["ratios"]

    def best(kind, pool):
        found = {label: value for label, value in ratio.items()
                 if label.startswith(f"{kind} {pool} ")}
        return max(found.items(), key=lambda item: item[1]) if found else ("-", float("nan"))
    cpu = {pool: best("cpu", pool) for pool in pools() if pool != "solo"}
    io = {pool: best("io", pool) for pool in pools() if pool != "solo"}
    return ("rule of thumb, CPU-bound → processes: best " + ", ".join(
        f"{pool} ×{value:.2f} (c={label.split()[-1]})" for pool, (label, value) in cpu.items())
        + "\nrule of thumb, IO-bound → gevent/eventlet: best " + ", ".join(
        f"{pool} ×{value:.2f} (c={label.split()[-1]})" for pool, (label, value) in io.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="one level each, one round: tests")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 100:
        print("error: --rounds must be 1 to 100", file=sys.stderr)
        return 2
    levels, rounds = (SHORT, 1) if args.short else (FULL, args.rounds)
    run_and_report(measure, report, [args.json] + ([] if args.short else [SAVED]),
                   levels, rounds, warmup=not args.short)
    return 0


if __name__ == "__main__":
    sys.exit(main())
