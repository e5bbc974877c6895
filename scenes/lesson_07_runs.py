"""Lesson 07's measurements, shared by bench/brokers.py, bench/pools.py, bench/tuning.py, the
notebook and the tests: workers started side by side, each on a queue of its own, and the same
burst, round trip or batch sent to each in turn, round after round.

Usage (REDIS_URL set first: `ensure_redis()` or a private RedisServer, as bench/*.py do)::

    from scenes import lesson_07_runs as runs
    with runs.started([runs.Setup("defaults"), runs.Setup("tuned", tuning="ignore_result")]) as ws:
        runs.burst(ws["defaults"], 500)                       # tiny tasks per second
        runs.burst(ws["tuned"], 500, ignore_result=True)
        runs.round_trips(ws["defaults"], 50)                  # seconds, one task at a time

Every wait has a timeout; every worker started here is stopped on leaving `started`, and the
RabbitMQ queues are deleted (only ours: labkit/amqp.py).
"""
from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field

from celery import group

import tasks
from labkit.amqp import own_queue
from labkit.processes import Worker

QUIET_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
BURST_TIMEOUT = 120.0


@dataclass
class Setup:
    """One worker to measure: its pool, its settings (TUNING, flags, broker), its own queue."""
    label: str
    pool: str = "prefork"
    concurrency: int = 2
    tuning: str = ""                  # TUNING steps (tasks.py), comma-separated
    quiet: bool = True                # --without-gossip --without-mingle --without-heartbeat
    broker_url: str | None = None     # None: the lesson's Redis; amqp://… for RabbitMQ
    timeline: bool = False            # RUN_TIMELINE=1 (off in benchmarks unless measured)
    data_url: str | None = None       # REDIS_URL of the worker (lesson data, the timeline)
    queue: str = ""
    worker: Worker | None = field(default=None, repr=False)
    producer: object = field(default=None, repr=False)

    def env(self) -> dict:
        env = {"RUN_TIMELINE": "1" if self.timeline else "0", "TUNING": self.tuning,
               "CELERY_BROKER_URL": self.broker_url or tasks.BROKER_URL,
               "CELERY_RESULT_BACKEND": tasks.RESULT_BACKEND}
        if self.data_url:
            env["REDIS_URL"] = self.data_url
        return env


def _worker(setup: Setup) -> Worker:
    worker = Worker(f"l07-{setup.label}-{uuid.uuid4().hex[:4]}", concurrency=setup.concurrency,
                    pool=setup.pool, queues=[setup.queue],
                    extra_args=["--without-heartbeat"] if setup.quiet else [], env=setup.env())
    if not setup.quiet:   # Celery's defaults: gossip, mingle and heartbeat on
        worker.celery_args = [arg for arg in worker.celery_args if arg not in QUIET_FLAGS]
    return worker


@contextlib.contextmanager
def started(setups: list[Setup], timeout: float = 90.0):
    """Start one worker per setup (start-ups overlap), each on a queue of its own; yield
    {label: setup}; stop them all and delete our RabbitMQ queues on leaving."""
    with contextlib.ExitStack() as stack:
        for setup in setups:
            if setup.broker_url:
                setup.queue = stack.enter_context(own_queue(setup.broker_url, setup.label))
                connection = stack.enter_context(tasks.app.connection_for_write(setup.broker_url))
                setup.producer = tasks.app.amqp.Producer(connection, auto_declare=False)
            else:
                setup.queue = f"lesson07-{setup.label}-{uuid.uuid4().hex[:6]}"
            setup.worker = _worker(setup)
        try:
            for setup in setups:
                setup.worker.start()
            for setup in setups:
                setup.worker.wait_ready(timeout)
            yield {setup.label: setup for setup in setups}
        finally:
            for setup in setups:
                if setup.worker is not None:
                    setup.worker.stop(graceful=False)


def _send(setup: Setup, signature, **options):
    if setup.producer is not None:
        options["producer"] = setup.producer
    return signature.apply_async(queue=setup.queue, **options)


def burst(setup: Setup, size: int, ignore_result: bool = False, chunk: int = 0,
          timeout: float = BURST_TIMEOUT) -> float:
    """Send `size` tally tasks at once (as chunks of `chunk` when given); tasks per second from
    the first send until the counter in Redis reaches `size`."""
    db = tasks.db() if setup.data_url is None else _client(setup.data_url)
    key = f"lesson07:tally:{uuid.uuid4().hex}"
    sent = []
    started_at = time.perf_counter()
    if chunk:
        signature = tasks.tally.chunks([(key, 1)] * size, chunk).group()
        sent.append(_send(setup, signature, ignore_result=ignore_result))
    else:
        for _ in range(size):
            sent.append(_send(setup, tasks.tally.s(key, 1), ignore_result=ignore_result))
    deadline = time.monotonic() + timeout
    while int(db.get(key) or 0) < size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{setup.label}: {db.get(key)} of {size} tasks done in {timeout} s")
        time.sleep(0.002)
    seconds = time.perf_counter() - started_at
    db.delete(key)
    _forget(sent)
    return size / seconds


def _forget(results) -> None:
    """Stop listening for results we will not read (the producer subscribed to each)."""
    for result in results:
        for one in getattr(result, "results", None) or [result]:
            with contextlib.suppress(Exception):
                one.backend.remove_pending_result(one)


_clients: dict = {}


def _client(url: str):
    import redis
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, decode_responses=True)
    return _clients[url]


def round_trips(setup: Setup, count: int, timeout: float = 30.0) -> list[float]:
    """`count` add tasks one after another, each waited for: seconds from send to result."""
    seconds = []
    for number in range(count):
        started_at = time.perf_counter()
        result = _send(setup, tasks.add.s(number, number))
        if result.get(timeout=timeout) != 2 * number:
            raise AssertionError(f"{setup.label}: add({number}, {number}) came back wrong")
        seconds.append(time.perf_counter() - started_at)
    return seconds


def batch(setup: Setup, signatures: list, timeout: float = 120.0) -> tuple[float, list]:
    """Send `signatures` as a group; tasks per second until every result is in, and the results."""
    started_at = time.perf_counter()
    result = _send(setup, group(signatures))
    values = result.get(timeout=timeout)
    return len(signatures) / (time.perf_counter() - started_at), values


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def interleaved(cases: dict, rounds: int, warmup: bool = True, seed: int | None = None) -> dict:
    """Run every case (label -> function returning a number) once per round, in a new random
    order each round (a first warm-up round not counted); {label: [one number per round]}."""
    rng = random.Random(seed)
    found = {label: [] for label in cases}
    for number in range(rounds + (1 if warmup else 0)):
        order = list(cases)
        rng.shuffle(order)
        for label in order:
            value = cases[label]()
            if number or not warmup:
                found[label].append(value)
    return found


def ratios(found: dict, baseline: str) -> dict:
    """{label: median over rounds of (this round's value / the baseline's in the same round)}."""
    return {label: statistics.median(value / base for value, base in zip(values, found[baseline]))
            for label, values in found.items()}


def machine() -> dict:
    """What the numbers were measured on: for the tables' headers and the saved files."""
    import platform
    import sys

    import celery
    import kombu
    import redis as redis_py
    server = tasks.db().info("server")
    return {"python": sys.version.split()[0], "celery": celery.__version__,
            "kombu": kombu.__version__, "redis_py": redis_py.__version__,
            "redis_server": server.get("redis_version"), "cpus": os.cpu_count(),
            "machine": f"{platform.system()} {platform.machine()}",
            "load": [round(load, 1) for load in os.getloadavg()],
            "when": time.strftime("%Y-%m-%d %H:%M")}



def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def describe(found: dict) -> str:
    """One line: the machine and the versions, for a table's header."""
    return (f"{found['machine']}, {found['cpus']} CPUs, load {' '.join(map(str, found['load']))}; "
            f"Python {found['python']}, Celery {found['celery']}, kombu {found['kombu']}, "
            f"redis-py {found['redis_py']}, Redis {found['redis_server']}"
            + (f", RabbitMQ {found['rabbitmq']}" if found.get("rabbitmq") else "")
            + f"; {found['when']}")
