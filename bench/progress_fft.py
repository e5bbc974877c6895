"""What progress reporting costs: the same FFT loop with and without it, side by side.

Usage::

    $ python bench/progress_fft.py                 # about two minutes
    $ python bench/progress_fft.py --rounds 100000 --pairs 21

Everything runs on a private Redis and one worker with one pool process, started here and
stopped at the end. Two measurements:

1. Round trips of one PROGRESS update (update_state + the task-progress event), counted twice:
   in this process (each send of redis-py is one round trip, see labkit.observe) and on the
   server (INFO commandstats before and after, while nothing else talks to it).
2. fft_random(N) without reporting and with it (every FFT_PROGRESS_INTERVAL = 0.2 s), in
   alternating order on the same worker; the task times its own loop, and also the time it
   spends reporting (a second view, far less noisy than the side-by-side ratios). Printed as
   ratios; target: at most 2 % overhead at 5 or more updates a second. The task also times the
   CPU its reporting used: the rest of the reporting time is waiting, for Redis and for a free
   core, which a busy machine lengthens.
   Then the same for an update after every round, the cost that the time-throttle avoids.

Not a test: the numbers depend on the machine. Run it on a quiet one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit.processes import Worker  # noqa: E402
from labkit.redis_server import RedisServer  # noqa: E402

UPDATES_COUNTED = 50


def commandstats(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in client.info("commandstats").items()}


def count_round_trips(tasks, client) -> None:
    from scenes.lesson_04 import update_cost

    task_id = str(uuid.uuid4())
    before = commandstats(client)
    cost = update_cost(tasks.fft_random, task_id, updates=UPDATES_COUNTED)
    after = commandstats(client)
    plain = update_cost(tasks.fft_random, str(uuid.uuid4()), updates=UPDATES_COUNTED, events=False)
    # The commandstats window also holds update_cost's warm-up update and INFO itself.
    per_update = {name: (after[name] - before.get(name, 0) - (name == "info"))
                  / (UPDATES_COUNTED + 1) for name in after}
    per_update = {name: calls for name, calls in per_update.items() if calls >= 0.5}
    print(f"One PROGRESS update, counted over {UPDATES_COUNTED} updates on a private Redis:")
    print(f"  round trips (sends from this process): {cost['round_trips']:g} = "
          + " | ".join(" ".join(send) for send in cost["sends"]))
    print(f"    of which update_state: {plain['round_trips']:g}, the task-progress event: "
          f"{cost['round_trips'] - plain['round_trips']:g}")
    print(f"  commands on the server (INFO commandstats delta): {sum(per_update.values()):.1f} = "
          + ", ".join(f"{name} {calls:.1f}" for name, calls in sorted(per_update.items())))
    print(f"  time in this process: {plain['seconds'] * 1e3:.2f} ms update_state, "
          f"{cost['seconds'] * 1e3:.2f} ms with the event, back to back (caches warm)")
    cold = update_cost(tasks.fft_random, str(uuid.uuid4()), updates=10, busy=0.2)
    print(f"  after 0.2 s of FFT work each, as in the task: {cold['seconds'] * 1e3:.2f} ms with "
          f"the event, of which CPU {cold['cpu_seconds'] * 1e3:.2f} ms (warm: "
          f"{cost['cpu_seconds'] * 1e3:.2f} ms)")
    # The first update of a task opens what Progress holds; measured again with this process's
    # connection pools warm, as in a worker that has run tasks before.
    first = update_cost(tasks.fft_random, str(uuid.uuid4()), updates=1).get("first_sends")
    if first is not None:
        print(f"  once per task, at its first update: {len(first) - len(cost['sends'])} more "
              "round trips = " + " | ".join(" ".join(send) for send in first))


def compare(tasks, rounds: int, pairs: int, with_options: dict,
            without_options: dict | None = None) -> tuple[float, ...]:
    """Fastest seconds without / with (on a shared machine the minimum is the least disturbed
    run), the median per-pair ratio, and medians of updates per second, of the share of the
    loop spent reporting, as the task itself timed it, and of the CPU share of that."""
    options = {"without": without_options or {"report": False}, "with": with_options}
    seconds = {"without": [], "with": []}
    ratios, rates, shares, cpu_shares = [], [], [], []
    for pair in range(pairs):
        order = ["without", "with"] if pair % 2 == 0 else ["with", "without"]  # ABBA: drift cancels
        outcome = {side: tasks.fft_random.delay(rounds, seed=pair, **options[side]).get(timeout=600)
                   for side in order}
        for side in seconds:
            seconds[side].append(outcome[side]["seconds"])
        ratios.append(outcome["with"]["seconds"] / outcome["without"]["seconds"])
        rates.append(outcome["with"]["updates"] / outcome["with"]["seconds"])
        shares.append(outcome["with"]["progress_seconds"] / outcome["with"]["seconds"])
        cpu_shares.append(outcome["with"].get("progress_cpu_seconds", float("nan"))
                          / outcome["with"]["seconds"])
    return (min(seconds["without"]), min(seconds["with"]), statistics.median(ratios),
            statistics.median(rates), statistics.median(shares), statistics.median(cpu_shares))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/progress_fft.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30_000, help="FFT rounds per run")
    parser.add_argument("--pairs", type=int, default=15, help="runs with and without, alternating")
    args = parser.parse_args(argv)

    server = RedisServer().start()
    os.environ["REDIS_URL"] = server.url
    import redis

    import tasks

    client = redis.Redis.from_url(server.url)
    try:
        print(f"load average: {' '.join(f'{load:.1f}' for load in os.getloadavg())} "
              f"on {os.cpu_count()} cores")
        count_round_trips(tasks, client)   # before the worker starts: nothing else talks
        with Worker("bench", concurrency=1, log_dir=Path(".run/logs")):
            tasks.fft_random.delay(2000).get(timeout=60)   # warm the pool process
            print(f"\nfft_random({args.rounds}) on one worker, {args.pairs} pairs, alternating:")
            off, on, ratio, rate, share, cpu = compare(tasks, args.rounds, args.pairs, {})
            print(f"  fastest without progress: {off:.3f} s   with progress every "
                  f"{tasks.PROGRESS_INTERVAL:g} s: {on:.3f} s ({rate:.1f} updates/s)")
            print(f"  overhead, side by side: {100 * (on / off - 1):+.2f} % fastest vs fastest, "
                  f"{100 * (ratio - 1):+.2f} % median of per-pair ratios "
                  "(target ≤ 2 % at ≥ 5 updates/s)")
            print(f"  time spent reporting, as the task timed it: {100 * share:.2f} % of its loop "
                  f"({1e3 * share / rate:.2f} ms per update in the worker), of which CPU "
                  f"{100 * cpu:.2f} % ({1e3 * cpu / rate:.2f} ms; the rest is waiting)")
            off, on, ratio, *_ = compare(tasks, args.rounds, args.pairs, {"report": False})
            print(f"  control, no progress on both sides: {100 * (on / off - 1):+.2f} % fastest vs "
                  f"fastest, {100 * (ratio - 1):+.2f} % median of per-pair ratios (the noise)")
            small = max(1, args.rounds // 20)
            off, on, ratio, rate, share, _ = compare(tasks, small, args.pairs, {"interval": 0})
            print(f"\nthe same with an update after every round, fft_random({small}):")
            print(f"  fastest without progress: {off:.3f} s   with: {on:.3f} s ({rate:.0f} updates/s)")
            print(f"  overhead: {100 * (ratio - 1):+.1f} %, {1e3 * share / rate:.2f} ms per update — "
                  "why updates are throttled by time, not by count")
    finally:
        client.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
