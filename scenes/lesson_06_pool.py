"""Lesson 06's scenes about the pool: prefetch holding short tasks hostage, a leaking task, and
autoscale under a burst.

Usage (notebook 06b, tests/test_06_pool.py and `scripts/figures.py 06` call these)::

    >>> found = prefetch_hostages("Celery's default: prefetch ×4")
    >>> found.hostages                        # short tasks that waited for the long one
    >>> prefetch_hostages("--disable-prefetch").hostages       # 0
    >>> leak(tasks=9, megabytes=20)           # {label: [(pid, MiB), ...]} per limit
    >>> autoscale_burst()                     # pool size and queue length sampled over time

Prefetch, forced: worker `busy` starts a 3 s task; then 6 short `add`s are sent; `busy` takes
what its prefetch lets it take; only then does worker `idle` start consuming the queue (a remote
control `add_consumer`: it was up all along, serving another queue). Whatever `busy` took waits
behind the long task although `idle` has nothing to do.
"""
from __future__ import annotations

import dataclasses
import os
import time

import redis

from labkit import Worker, timeline
from scenes.lesson_06_kill import WAIT, producer_for, wait_for

STANDBY = "lesson06-standby"
# name -> (worker arguments, environment): the same run under each
PREFETCH_VARIANTS = {
    "Celery's default: prefetch ×4": (["--prefetch-multiplier=4"], {}),
    "-O fair (×4)": (["--prefetch-multiplier=4", "-O", "fair"], {}),
    "this repo's ×1, ack on receipt": ([], {}),
    "NOTHING_LOST: acks_late, ×1": ([], {"NOTHING_LOST": "1"}),
    "--disable-prefetch": (["--disable-prefetch"], {}),
}


@dataclasses.dataclass
class PrefetchOutcome:
    variant: str
    long_seconds: float
    runs: list            # timeline runs: the long task and the short ones

    @property
    def short_waits(self) -> list[float]:
        """Seconds each short task waited between being sent and starting."""
        return [run.waited for run in self.runs if run.task == "tasks.add"]

    @property
    def hostages(self) -> int:
        """Short tasks that waited at least half the long task: they waited for it."""
        return sum(wait >= self.long_seconds / 2 for wait in self.short_waits)


def prefetch_hostages(variant: str, shorts: int = 6, long_seconds: float = 3.0,
                      url: str | None = None) -> PrefetchOutcome:
    """One long task on `busy`, then `shorts` short ones; `idle` joins once `busy` has taken
    what it takes. Both workers run the `variant`'s settings."""
    args, more_env = PREFETCH_VARIANTS[variant]
    env = {**more_env, **({"REDIS_URL": url} if url else {})}
    busy = Worker("busy", env=env, extra_args=args)
    idle = Worker("idle", env=env, extra_args=args, queues=[STANDBY])
    app = producer_for(url)
    client = redis.Redis.from_url(url or os.environ["REDIS_URL"])
    try:
        busy.start(), idle.start()
        busy.wait_ready(), idle.wait_ready()
        run_id = timeline.start_run("prefetch", url=url)
        long = app.send_task("tasks.data_extractor", [long_seconds])
        wait_for(lambda: long.state == "STARTED", WAIT, "the long task to start")
        results = [app.send_task("tasks.add", [n, n]) for n in range(shorts)]
        wait_until_settled(app, client, busy, shorts)
        app.control.add_consumer("celery", destination=[idle.nodename], reply=True, timeout=5)
        for result in results:
            result.get(timeout=WAIT)
        long.get(timeout=WAIT)
        runs = timeline.wait_until_finished(run_id, url=url)
        return PrefetchOutcome(variant, long_seconds, runs)
    finally:
        busy.stop(), idle.stop()
        client.close()


def wait_until_settled(app, client, worker: Worker, sent: int) -> None:
    """Until every short task is either queued or reserved by `worker`, twice in a row."""
    inspect = app.control.inspect(destination=[worker.nodename], timeout=2.0)
    seen = []

    def settled() -> bool:
        reserved = len((inspect.reserved() or {}).get(worker.nodename, []))
        seen.append(reserved + client.llen("celery") == sent and reserved)
        return len(seen) >= 2 and seen[-1] is not False and seen[-1] == seen[-2]
    wait_for(settled, WAIT, f"{worker.name} to take what its prefetch allows")


def describe_prefetch(outcome: PrefetchOutcome) -> str:
    waits = ", ".join(f"{wait:.1f}" for wait in sorted(outcome.short_waits))
    return (f"{outcome.variant:<32} {outcome.hostages} of {len(outcome.short_waits)} short "
            f"tasks waited for the long one; waits (s): {waits}")


# --- A leaking task: the pool replaces its processes ----------------------------------------

LEAK_VARIANTS = {
    "no limit": [],
    "--max-tasks-per-child=3": ["--max-tasks-per-child=3"],
    "--max-memory-per-child=100000 (KiB)": ["--max-memory-per-child=100000"],
}


def start_leak_workers(url: str | None = None) -> dict:
    """One worker per limit, one queue each, started side by side and ready: {label: Worker}."""
    env = {"REDIS_URL": url} if url else {}
    workers = {label: Worker(f"leak{n}", env=env, extra_args=args, queues=[f"leak{n}"])
               for n, (label, args) in enumerate(LEAK_VARIANTS.items())}
    try:
        for worker in workers.values():
            worker.start()
        for worker in workers.values():
            worker.wait_ready()
    except BaseException:
        for worker in workers.values():
            worker.stop()
        raise
    return workers


def leak(tasks: int = 9, megabytes: float = 20.0, url: str | None = None,
         workers: dict | None = None) -> dict:
    """Run `tasks` leaky(megabytes) one after another on one pool process, once per limit, on
    `workers` (default: start_leak_workers(url)); stops them. {label: [(pid, MiB), ...]}."""
    workers = workers or start_leak_workers(url)
    app = producer_for(url)
    try:
        found = {label: [] for label in workers}
        for _ in range(tasks):   # one at a time on each worker: each answer is one task later
            sent = {label: app.send_task("tasks.leaky", [megabytes], queue=worker.name)
                    for label, worker in workers.items()}
            for label, result in sent.items():
                answer = result.get(timeout=WAIT)
                found[label].append((answer["pid"], answer["rss_mib"]))
        return found
    finally:
        for worker in workers.values():
            worker.stop()


# --- Autoscale: the pool grows under a burst and shrinks after it ---------------------------

def autoscale_burst(burst: int = 16, seconds: float = 0.6, keepalive: float = 1.0,
                    url: str | None = None, every: float = 0.3) -> dict:
    """A worker with --autoscale=4,1 gets `burst` data_extractor(seconds) tasks at once.
    AUTOSCALE_KEEPALIVE (Celery's, 30 s by default) is how long it keeps idle processes.
    Returns {"t": seconds, "pool": processes, "queue": messages waiting} samples."""
    env = {"AUTOSCALE_KEEPALIVE": f"{keepalive:g}", **({"REDIS_URL": url} if url else {})}
    worker = Worker("scaled", env=env, extra_args=["--autoscale=4,1"])
    app = producer_for(url)
    client = redis.Redis.from_url(url or os.environ["REDIS_URL"])
    samples = {"t": [], "pool": [], "queue": []}
    try:
        worker.start().wait_ready()
        inspect = app.control.inspect(destination=[worker.nodename], timeout=1.0)
        started = time.time()

        def sample() -> None:
            stats = (inspect.stats() or {}).get(worker.nodename)
            if stats:
                samples["t"].append(time.time() - started)
                samples["pool"].append(len(stats["pool"]["processes"]))
                samples["queue"].append(client.llen("celery"))
        sample()                                   # at rest, before the burst
        results = [app.send_task("tasks.data_extractor", [seconds]) for _ in range(burst)]
        while not all(result.ready() for result in results):
            sample()
            time.sleep(every)
        deadline = time.monotonic() + 10 * keepalive + 10
        while samples["pool"][-1:] != [1] and time.monotonic() < deadline:
            sample()     # after the burst: until the pool is back to its minimum
            time.sleep(every)
        return samples
    finally:
        worker.stop()
        client.close()
