"""The walkthrough behind `make demo`: Redis, three named workers, the producer, a summary.

Usage::

    $ make demo                 # or, inside the virtualenv: python -m labkit.demo

It uses REDIS_URL if set, else starts a private Redis (a free port, nothing kept); starts worker1,
worker2 and worker3; runs `python invoker.py …` the way you would in a
terminal; prints who did what; and stops everything it started, also on Ctrl-C.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from labkit.processes import REPO_ROOT, Fleet, ProcessFailed
from labkit.redis_server import RedisNotFound, ensure_redis
from labkit.settings import redacted

SCENARIO = [
    (["add", "2", "3"], "a task and its result"),
    (["xsum", "1", "2", "3", "4"], "a list travels as JSON"),
    (["mail", "--count", "9"], "three workers drain one outbox: who sent what?"),
    (["burst", "200"], "200 tiny tasks: throughput"),
    (["divide", "1", "0"], "a task that fails: the exception comes back to the producer"),
]


def run_invoker(args: list[str], note: str, timeout: float = 60.0) -> int:
    print(f"\n$ python invoker.py {' '.join(args)}        # {note}", flush=True)
    # Its own session: Ctrl-C reaches only the demo, which then ends the invoker quietly.
    completed = subprocess.run([sys.executable, "invoker.py", *args], cwd=REPO_ROOT,
                               timeout=timeout, start_new_session=True)
    return completed.returncode


def tasks_run_per_worker(url: str) -> dict[str, int]:
    from celery import Celery

    # A bare app on the same broker: asking the workers needs no task, and plumbing imports none.
    stats = Celery(broker=url).control.inspect(timeout=2.0).stats() or {}
    return {name: sum(info.get("total", {}).values()) for name, info in sorted(stats.items())}


def main() -> int:
    # SIGTERM (e.g. `kill`) unwinds like Ctrl-C, so the finally-blocks below stop everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        redis = ensure_redis()
    except RedisNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        how = "private server started for this demo" if redis.started_here else "already running"
        print(f"Redis: {redacted(redis.url)} ({how})")
        started = time.monotonic()
        with Fleet(["worker1", "worker2", "worker3"]) as fleet:
            print(f"Workers ready in {time.monotonic() - started:.1f} s: "
                  + ", ".join(f"{w.nodename} (pid {w.pid})" for w in fleet.workers))
            failures = [args for args, note in SCENARIO
                        if run_invoker(args, note) != 0 and args[0] != "divide"]
            print("\nSummary")
            for name, count in tasks_run_per_worker(redis.url).items():
                print(f"  {name:<20} ran {count} tasks")
            logs = fleet.workers[0].log_path.parent
            shown = logs.relative_to(REPO_ROOT) if logs.is_relative_to(REPO_ROOT) else logs
            print(f"  worker logs: {shown}/")
            print("Stopping workers" + (" and Redis" if redis.started_here else "") + " …")
        if failures:
            print(f"error: these steps failed: {failures}", file=sys.stderr)
            return 1
        print("Done. Next: the several-terminals walkthrough in README.md, "
              "or notebooks/01_producer_worker.ipynb.")
        return 0
    except ProcessFailed as error:
        print(f"error: a worker did not start — {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted — stopping everything the demo started", file=sys.stderr)
        return 130
    finally:
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
