"""Lesson 06's scenes about the pool: prefetch holding short tasks hostage, a leaking task, and
autoscale under a burst.

Usage (notebook 06c, tests/test_06_pool.py and `scripts/figures.py 06` call these)::

    >>> found = prefetch_hostages("Celery's default: prefetch ×4")
    >>> found.hostages                        # short tasks that waited for the long one
    >>> prefetch_hostages("--disable-prefetch").hostages       # 0
    >>> leak(tasks=6, megabytes=20)           # {label: [(pid, MiB), ...]} per limit
    >>> autoscale_burst()                     # pool size and queue length sampled over time

Each scene starts its workers and stops them, unless it is given workers made by
prefetch_workers(), leak_workers() or autoscale_worker() and started ahead (notebook 06c starts
the next scene's while one runs: scenes/lesson_06_ahead.py); it then leaves stopping them to
whoever started them. Each scene's workers have queues of their own.

Prefetch, forced: worker `busy` starts a 2 s task; then 6 short `add`s are sent; `busy` takes
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
from scenes.lesson_06_ahead import stop_together
from scenes.lesson_06_kill import WAIT, producer_for, wait_for

STANDBY = "lesson06-standby"
LONG_SECONDS = 2.0
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
    busy: str = "busy"    # the worker that ran the long task

    @property
    def short_runs(self) -> list:
        return [run for run in self.runs if run.task == "tasks.add"]

    @property
    def short_waits(self) -> list[float]:
        """Seconds each short task waited between being sent and starting."""
        return [run.waited for run in self.short_runs]

    @property
    def held(self) -> list[bool]:
        """For each short task: did `busy` take it? Then it waited for the long task to end
        (busy runs one task at a time), however idle the other worker was."""
        return [run.worker.split("@")[0] == self.busy for run in self.short_runs]

    @property
    def hostages(self) -> int:
        """Short tasks that waited for the long one: those `busy` had taken."""
        return sum(self.held)


def prefetch_workers(variant: str, url: str | None = None) -> tuple[Worker, Worker]:
    """(busy, idle) for `variant`, not started: both with its settings, busy on the variant's
    queue, idle on a standby queue until the scene adds the variant's."""
    args, more_env = PREFETCH_VARIANTS[variant]
    env = {**more_env, **({"REDIS_URL": url} if url else {})}
    number = list(PREFETCH_VARIANTS).index(variant) + 1
    queue = f"lesson06-prefetch{number}"
    return (Worker(f"busy{number}", env=env, extra_args=args, queues=[queue]),
            Worker(f"idle{number}", env=env, extra_args=args, queues=[STANDBY]))


def prefetch_hostages(variant: str, shorts: int = 6, long_seconds: float = LONG_SECONDS,
                      url: str | None = None, workers: tuple | None = None) -> PrefetchOutcome:
    """One long task on `busy`, then `shorts` short ones; `idle` joins once `busy` has taken
    what it takes. `workers`: prefetch_workers(variant, url), started ahead; else started here."""
    busy, idle = workers or prefetch_workers(variant, url)
    queue = f"lesson06-prefetch{busy.name.removeprefix('busy')}"
    app = producer_for(url)
    client = redis.Redis.from_url(url or os.environ["REDIS_URL"])
    try:
        for worker in (busy, idle):
            if not worker.is_running():
                worker.start()
        busy.wait_ready(), idle.wait_ready()
        run_id = timeline.start_run("prefetch", url=url)
        long = app.send_task("tasks.data_extractor", [long_seconds], queue=queue)
        wait_for(lambda: long.state == "STARTED", WAIT, "the long task to start")
        results = [app.send_task("tasks.add", [n, n], queue=queue) for n in range(shorts)]
        wait_until_settled(app, client, busy, queue, shorts)
        app.control.add_consumer(queue, destination=[idle.nodename], reply=True, timeout=5)
        for result in results:
            result.get(timeout=WAIT)
        long.get(timeout=WAIT)
        runs = timeline.wait_until_finished(run_id, url=url)
        return PrefetchOutcome(variant, long_seconds, runs, busy.name)
    finally:
        if not workers:
            busy.stop(), idle.stop()
        client.close()


def wait_until_settled(app, client, worker: Worker, queue: str, sent: int) -> None:
    """Until every short task is either in `queue` or reserved by `worker`, twice in a row."""
    inspect = app.control.inspect(destination=[worker.nodename], timeout=2.0)
    seen = []

    def settled() -> bool:
        reserved = len((inspect.reserved() or {}).get(worker.nodename, []))
        seen.append(reserved + client.llen(queue) == sent and reserved)
        return len(seen) >= 2 and seen[-1] is not False and seen[-1] == seen[-2]
    wait_for(settled, WAIT, f"{worker.name} to take what its prefetch allows")


def describe_prefetch(outcome: PrefetchOutcome) -> str:
    waits = ", ".join(f"{wait:.1f}" for wait in sorted(outcome.short_waits))
    return (f"{outcome.variant:<32} {outcome.hostages} of {len(outcome.short_waits)} short "
            f"tasks waited for the long one; waits (s): {waits}")


# --- A leaking task: the pool replaces its processes ----------------------------------------

LEAK_VARIANTS = {
    "no limit": [],
    "--max-tasks-per-child=2": ["--max-tasks-per-child=2"],
    "--max-memory-per-child=90000 (KiB)": ["--max-memory-per-child=90000"],
}


def leak_workers(url: str | None = None) -> dict:
    """One worker per limit, each on a queue of its own (its name), not started: {label: Worker}."""
    env = {"REDIS_URL": url} if url else {}
    return {label: Worker(f"leak{n}", env=env, extra_args=args, queues=[f"leak{n}"])
            for n, (label, args) in enumerate(LEAK_VARIANTS.items())}


def leak(tasks: int = 6, megabytes: float = 20.0, url: str | None = None,
         workers: dict | None = None) -> dict:
    """Run `tasks` leaky(megabytes) one after another on one pool process, once per limit, on
    `workers` (leak_workers(url), started ahead), else on workers started and stopped here.
    {label: [(pid, MiB), ...]}."""
    own = workers is None
    workers = workers or leak_workers(url)
    app = producer_for(url)
    try:
        for worker in workers.values():
            if not worker.is_running():
                worker.start()
        for worker in workers.values():
            worker.wait_ready()
        found = {label: [] for label in workers}
        for _ in range(tasks):   # one at a time on each worker: each answer is one task later
            sent = {label: app.send_task("tasks.leaky", [megabytes], queue=worker.name)
                    for label, worker in workers.items()}
            for label, result in sent.items():
                answer = result.get(timeout=WAIT)
                found[label].append((answer["pid"], answer["rss_mib"]))
        return found
    finally:
        if own:
            stop_together(workers.values())


# --- Autoscale: the pool grows under a burst and shrinks after it ---------------------------

AUTOSCALE_QUEUE = "lesson06-autoscale"


def autoscale_worker(keepalive: float = 1.0, url: str | None = None) -> Worker:
    """A worker with --autoscale=4,1 that lets an idle process go after `keepalive` seconds
    (AUTOSCALE_KEEPALIVE, Celery's: 30 s by default); not started."""
    env = {"AUTOSCALE_KEEPALIVE": f"{keepalive:g}", **({"REDIS_URL": url} if url else {})}
    return Worker("scaled", env=env, extra_args=["--autoscale=4,1"], queues=[AUTOSCALE_QUEUE])


def autoscale_burst(burst: int = 12, seconds: float = 0.5, keepalive: float = 1.0,
                    url: str | None = None, every: float = 0.3,
                    worker: Worker | None = None) -> dict:
    """autoscale_worker(keepalive, url) gets `burst` data_extractor(seconds) tasks at once
    (`worker`: one started ahead, else one started and stopped here). Returns {"t": seconds,
    "pool": processes, "queue": messages waiting} samples, until the pool is back to one."""
    own = worker is None
    worker = worker or autoscale_worker(keepalive, url)
    app = producer_for(url)
    client = redis.Redis.from_url(url or os.environ["REDIS_URL"])
    samples = {"t": [], "pool": [], "queue": []}
    try:
        if not worker.is_running():
            worker.start()
        worker.wait_ready()
        inspect = app.control.inspect(destination=[worker.nodename], timeout=1.0)
        started = time.time()

        def sample() -> None:
            stats = (inspect.stats() or {}).get(worker.nodename)
            if stats:
                samples["t"].append(time.time() - started)
                # The autoscaler's count: a process it let go is gone at once, but stays in
                # the pool's list until the pool's next check (every 5 s).
                samples["pool"].append(stats["autoscaler"]["current"])
                samples["queue"].append(client.llen(AUTOSCALE_QUEUE))
        sample()                                   # at rest, before the burst
        results = [app.send_task("tasks.data_extractor", [seconds], queue=AUTOSCALE_QUEUE)
                   for _ in range(burst)]
        while not all(result.ready() for result in results):
            sample()
            time.sleep(every)
        deadline = time.monotonic() + 10 * keepalive + 10
        while samples["pool"][-1:] != [1] and time.monotonic() < deadline:
            sample()     # after the burst: until the pool is back to its minimum
            time.sleep(every)
        return samples
    finally:
        if own:
            worker.stop()
        client.close()
