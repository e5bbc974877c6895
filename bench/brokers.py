"""Redis against RabbitMQ as Celery's broker: the same tasks, the same workers, the same run.

Usage::

    $ python bench/brokers.py             # about two minutes
    $ python bench/brokers.py --short     # the test's mode
    $ AMQP_URL=amqp://user:password@host:5672/vhost python bench/brokers.py

A private Redis holds the results, the locks and the lesson data in both cases, as in the seed
set-up of the brown-bag talk (RabbitMQ as broker, Redis as result backend and for locks). Two
workers, alike (prefork, 2 processes, no remote control, gossip, mingle or heartbeat), one per
broker, each on a queue of its own (on RabbitMQ: `learn-celery-07-…`, deleted after). Round after
round, in random order: ROUND_TRIPS `add` tasks one at a time (producer → broker → worker →
result), and a burst of SIZE tiny tasks, with results kept and with ignore_result. Ratios are
RabbitMQ's over Redis's, per round, median. Then the seed set-up shown working: two
`data_extractor_single_instance` runs sent together through RabbitMQ, one runs and one is
skipped by the Redis lock.

RabbitMQ is at AMQP_URL (default amqp://guest:guest@localhost:5672//); when none answers, its
rows are skipped with one line that names the variable. Without --short the result is saved to
bench/results/07_brokers.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import run_and_report  # noqa: E402  (bench/common.py)

from labkit.amqp import DEFAULT_URL, amqp_problem  # noqa: E402
from labkit.settings import SettingError, amqp_url  # noqa: E402

SAVED = ROOT / "bench/results/07_brokers.json"
SAME = {"tuning": "no_remote_control"}


def measure(url: str | None, size: int, trips: int, rounds: int, warmup: bool) -> dict:
    from scenes import lesson_07_runs as runs
    setups = [runs.Setup("redis", **SAME)] + ([runs.Setup("rabbitmq", broker_url=url, **SAME)]
                                              if url else [])
    trips_seen = {setup.label: [] for setup in setups}
    cases = {}
    with runs.started(setups) as workers:
        for label, setup in workers.items():
            def trip(setup=setup):
                seconds = runs.round_trips(setup, trips)
                trips_seen[setup.label].extend(seconds)
                return runs.percentile(seconds, 50)
            cases[f"{label} round trip p50"] = trip
            cases[f"{label} burst, results kept"] = lambda s=setup: runs.burst(s, size)
            cases[f"{label} burst, ignore_result"] = lambda s=setup: runs.burst(
                s, size, ignore_result=True)
        found = runs.interleaved(cases, rounds, warmup=warmup)
        seed = seed_setup(workers["rabbitmq"]) if url else None
    result = {"size": size, "round_trips": trips, "rounds": rounds, "machine": runs.machine(),
              "found": found, "seed_000": seed,
              "trips_ms": {label: {"p50": 1e3 * runs.percentile(seen, 50),
                                   "p99": 1e3 * runs.percentile(seen, 99), "n": len(seen)}
                           for label, seen in trips_seen.items()}}
    if url:
        result["machine"]["rabbitmq"] = rabbitmq_version(url)
        result["ratios"] = {what: statistics.median(
            r / b for r, b in zip(found[f"rabbitmq {what}"], found[f"redis {what}"]))
            for what in ("round trip p50", "burst, results kept", "burst, ignore_result")}
    return result


def seed_setup(setup) -> dict:
    """RabbitMQ brokers, Redis keeps the result and the lock: two runs at once, one skipped."""
    import tasks
    from scenes.lesson_07_runs import _send
    results = [_send(setup, tasks.data_extractor_single_instance.s(1.0)) for _ in range(2)]
    values = [result.get(timeout=30) for result in results]
    return {"ran": sum(1 for v in values if v), "skipped": sum(1 for v in values if v is None),
            "results_from": "redis", "lock_in": "redis"}


def rabbitmq_version(url: str) -> str:
    import kombu
    with kombu.Connection(url, connect_timeout=3) as connection:
        connection.connect()
        return connection.connection.server_properties.get("version", "?")


def report(result: dict) -> str:
    from scenes import lesson_07_runs as runs
    found, trips = result["found"], result["trips_ms"]
    rows = []
    for broker in trips:
        rows.append([broker, f"{trips[broker]['p50']:.1f} ms", f"{trips[broker]['p99']:.1f} ms",
                     f"{statistics.median(found[f'{broker} burst, results kept']):,.0f}/s",
                     f"{statistics.median(found[f'{broker} burst, ignore_result']):,.0f}/s"])
    if "ratios" in result:
        ratio = result["ratios"]
        rows.append(["RabbitMQ ÷ Redis (median of per-round ratios)",
                     f"{ratio['round trip p50']:.2f}", "", f"{ratio['burst, results kept']:.2f}",
                     f"{ratio['burst, ignore_result']:.2f}"])
    text = (f"Brokers: {result['round_trips']} round trips and bursts of {result['size']} tiny "
            f"tasks, {result['rounds']} rounds interleaved\n{runs.describe(result['machine'])}\n\n"
            + runs.table(["broker", "round trip p50", "p99", "burst, results kept",
                          "burst, ignore_result"], rows))
    seed = result.get("seed_000")
    if seed:
        text += (f"\n\nseed set-up (RabbitMQ broker, Redis results and lock): two single-instance "
                 f"runs sent together: {seed['ran']} ran, {seed['skipped']} skipped by the lock")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few tasks, one round: for tests")
    parser.add_argument("--size", type=int, default=400, help="tasks per burst (default 400)")
    parser.add_argument("--round-trips", type=int, default=100, help="per round (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if not (1 <= args.size <= 100_000 and 1 <= args.round_trips <= 10_000
            and 1 <= args.rounds <= 100):
        print("error: --size 1 to 100,000, --round-trips 1 to 10,000, --rounds 1 to 100",
              file=sys.stderr)
        return 2
    try:
        url = amqp_url("AMQP_URL", DEFAULT_URL)
    except SettingError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    problem = amqp_problem(url)
    if problem:
        print(f"RabbitMQ skipped: {problem} — set AMQP_URL to compare it with Redis")
        url = None
    size, trips, rounds = (30, 10, 1) if args.short else (args.size, args.round_trips, args.rounds)
    run_and_report(measure, report, [args.json] + ([] if args.short else [SAVED]),
                   url, size, trips, rounds, warmup=not args.short)
    return 0


if __name__ == "__main__":
    sys.exit(main())
