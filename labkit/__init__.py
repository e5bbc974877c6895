"""Plumbing shared by the notebooks, the scenes, the tests and the demo: what the lessons stand on.

Nothing here is a lesson, and nothing here imports one (`tasks`, `scenes`, `locks`, …)::

    from labkit import ensure_redis, Fleet

    redis = ensure_redis()            # REDIS_URL if set, else a private server (exported)
    with Fleet(["worker1", "worker2", "worker3"]) as fleet:
        ...                           # real `celery -A tasks worker` processes, ready
    redis.stop()                      # a no-op when the Redis was already there

- `labkit.redis_server`: find a Redis or start a private, real `redis-server` (`make redis`).
- `labkit.processes`: start, wait for, and stop named `celery` worker processes (and beat).
- `labkit.children`: run Python functions in real child processes with a time limit; always reaped.
- `labkit.timeline`: every task run recorded in Redis through Celery signals, read back; overlaps.
- `labkit.queue_watch`: queue lengths sampled over time.
- `labkit.plots`: the timeline as a Gantt chart, queue lengths over time.
- `labkit.observe`: what a producer or a monitor sees: polled PROGRESS, Celery events, and the
  Redis round trips a piece of code makes.
- `labkit.terminal`: a command in a pseudo-terminal, its screen as text and as a picture.
- `labkit.settings`: settings from environment variables, checked, with one-line errors.
- `labkit.demo`: `make demo`.
"""
from labkit.redis_server import (
    RedisNotFound,
    RedisServer,
    ensure_redis,
    redis_answers,
)
from labkit.processes import Beat, Fleet, ProcessFailed, Worker, REPO_ROOT

__all__ = [
    "Beat",
    "Fleet",
    "ProcessFailed",
    "REPO_ROOT",
    "RedisNotFound",
    "RedisServer",
    "Worker",
    "ensure_redis",
    "redis_answers",
]
