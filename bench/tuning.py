"""Many tiny tasks: Celery's documented settings applied one at a time, and our own instrument's
cost, each as a ratio to the defaults measured in the same run.

Usage::

    $ python bench/tuning.py              # about four minutes
    $ python bench/tuning.py --short      # a few seconds' worth: the test's mode
    $ python bench/tuning.py --size 1000 --rounds 7 --json /tmp/tuning.json

One private Redis and one worker per step (prefork, 2 processes), all started at once, each on a
queue of its own. Round after round, in a new random order each round (a first round is a warm-up),
each gets the same burst: SIZE `tasks.tally` tasks sent at once, timed from the first send until
all have run (a counter in Redis). A step's ratio is the median over rounds of its throughput
divided by the defaults' in the same round. The steps add up, top to bottom (tasks.py,
TUNING_STEPS, says what each gives up). The timeline rows run the defaults with the run timeline
(lesson 02) connected: idle (one round trip per task) and recording a run (two).

Without --short, the result is saved to bench/results/07_tuning.json (the notebook draws it).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import run_and_report  # noqa: E402  (bench/common.py)


SAVED = ROOT / "bench/results/07_tuning.json"
CHUNK = 10
# (label, Setup options, burst options); each step keeps the ones above it
STEPS = [
    ("defaults (tasks.py as the lessons run it)", {"quiet": False}, {}),
    ("+ lean_results: no STARTED, no extended result", {"quiet": False, "tuning": "lean_results"}, {}),
    ("+ ignore_result", {"quiet": False, "tuning": "lean_results,ignore_result"},
     {"ignore_result": True}),
    ("+ prefetch multiplier 32", {"quiet": False, "tuning": "lean_results,ignore_result,prefetch"},
     {"ignore_result": True}),
    ("+ transport: no ack emulation", {"quiet": False, "tuning": "lean_results,ignore_result,"
                                       "prefetch,no_ack_emulation"}, {"ignore_result": True}),
    ("+ --without-gossip --without-mingle --without-heartbeat",
     {"tuning": "lean_results,ignore_result,prefetch,no_ack_emulation"}, {"ignore_result": True}),
    (f"+ chunks of {CHUNK}: the tuned configuration",
     {"tuning": "lean_results,ignore_result,prefetch,no_ack_emulation"},
     {"ignore_result": True, "chunk": CHUNK}),
]
TIMELINE = [
    ("defaults, timeline connected, nothing recorded", {"quiet": False, "timeline": True}, {}),
    ("defaults, timeline recording a run", {"quiet": False, "timeline": True, "record": True}, {}),
]


def measure(size: int, rounds: int, warmup: bool) -> dict:
    import redis

    from labkit import timeline
    from scenes import lesson_07_runs as runs

    recording_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(recording_url).set(timeline.CURRENT_RUN_KEY, "bench-07", ex=3600)
    setups, bursts = {}, {}
    for number, (label, options, burst) in enumerate(STEPS + TIMELINE):
        options = dict(options)
        data_url = recording_url if options.pop("record", False) else None
        same = [found for found in setups.values() if found.tuning == options.get("tuning", "")
                and found.quiet == options.get("quiet", True) and not options.get("timeline")
                and not found.timeline]
        setups[label] = same[0] if same else runs.Setup(f"step{number}", data_url=data_url,
                                                         **options)
        bursts[label] = burst
    with runs.started(list({id(s): s for s in setups.values()}.values())):
        cases = {label: (lambda label=label: runs.burst(setups[label], size, **bursts[label]))
                 for label in setups}
        found = runs.interleaved(cases, rounds, warmup=warmup)
    return {"size": size, "rounds": rounds, "machine": runs.machine(), "rates": found,
            "ratios": runs.ratios(found, STEPS[0][0]), "steps": [label for label, *_ in STEPS],
            "timeline": [label for label, *_ in TIMELINE]}


def report(result: dict) -> str:
    import statistics

    from scenes import lesson_07_runs as runs
    rows = [[label, f"{statistics.median(result['rates'][label]):,.0f}",
             f"{result['ratios'][label]:.2f}"] for label in result["steps"] + result["timeline"]]
    return (f"Tuning: bursts of {result['size']} tiny tasks (tasks.tally), prefork worker ×2, "
            f"{result['rounds']} rounds interleaved\n{runs.describe(result['machine'])}\n\n"
            + runs.table(["configuration", "tasks/s (median)", "× defaults"], rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="tiny bursts, one round: for tests")
    parser.add_argument("--size", type=int, default=500, help="tasks per burst (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if not (1 <= args.size <= 100_000 and 1 <= args.rounds <= 100):
        print("error: --size must be 1 to 100,000 and --rounds 1 to 100", file=sys.stderr)
        return 2
    size, rounds = (40, 1) if args.short else (args.size, args.rounds)
    run_and_report(measure, report, [args.json] + ([] if args.short else [SAVED]),
                   size, rounds, warmup=not args.short)
    return 0


if __name__ == "__main__":
    sys.exit(main())
