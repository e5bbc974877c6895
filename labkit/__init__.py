"""Plumbing shared by the notebooks, the tests and the demo.

Nothing here is a lesson; it is what the lessons stand on::

    from labkit import ensure_redis, Fleet

    redis = ensure_redis()            # the URL it uses, starting a private server if needed
    with Fleet(["worker1", "worker2", "worker3"]) as fleet:
        ...                           # real `celery -A tasks worker` processes, ready
    redis.stop()                      # a no-op when the Redis was already there

- `labkit.redis_server`: find a Redis or start a private, real `redis-server`.
- `labkit.processes`: start, wait for, and stop named `celery` worker processes (and beat).
- `labkit.timeline`: every task run recorded in Redis through Celery signals; overlaps; Gantt plot.
- `labkit.beat_runs`: lesson 02's scenes: beats run with given settings, their runs recorded.
- `labkit.children`: run Python functions in real child processes with a time limit; always reaped.
- `labkit.lock_stories`: lesson 03's races, forced (barriers, SIGSTOP, SIGKILL), and their timelines.
- `labkit.progress` (lesson 04): poll PROGRESS, receive Celery events, count Redis round trips,
  and draw the lesson's figures (`scripts/figures_04.py` regenerates them).
"""
from labkit.redis_server import (
    DEFAULT_REDIS_URL,
    RedisNotFound,
    RedisServer,
    ensure_redis,
    redis_answers,
)
from labkit.processes import Beat, Fleet, ProcessFailed, Worker, REPO_ROOT

__all__ = [
    "Beat",
    "DEFAULT_REDIS_URL",
    "Fleet",
    "ProcessFailed",
    "REPO_ROOT",
    "RedisNotFound",
    "RedisServer",
    "Worker",
    "ensure_redis",
    "redis_answers",
]
