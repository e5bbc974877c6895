"""Lesson 06's scene: Redis restarted under running workers and beat, without and with AOF.

Usage (notebook 06b, tests/test_06_restart.py and `scripts/figures.py 06` call these)::

    >>> outcome = restart_redis(aof=False)      # a Redis of its own, crashed (SIGKILL), restarted
    >>> outcome.first_task_after                # seconds from "Redis is back" to a task's result
    >>> outcome.kept                            # {'queued messages': 0, 'result': False, ...}
    >>> restart_redis(aof=True).kept            # appendonly yes: everything is still there

The scene starts a Redis of its own on a fixed port (never the session's or a user's), a worker
and beat (sending `send-mail` every 0.5 s) on it, and before the crash leaves four things in it:
3 messages in a queue no worker serves, a task result, a lock held with lesson 03's
`locks.Lock`, and that lock's fence counter. It SIGKILLs Redis (a crash: no final save),
keeps it down for `down` seconds, and starts it again on the same port and the same --dir.
Then it sends one `add` at once, waits for its result, and counts beat's sends after the restart.
Nobody is restarted by hand: the worker, beat and this producer reconnect by themselves.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import redis

from labkit import Beat, RedisServer, Worker
from labkit.redis_server import free_port, redis_answers
from locks import Lock
from scenes.lesson_06_kill import WAIT, producer_for, wait_for

PARKED = "lesson06-parked"        # a queue no worker serves: what is waiting in a broker
LOCK_NAME = "lesson06:nightly-report"


@dataclasses.dataclass
class RestartOutcome:
    aof: bool
    down: float                       # seconds Redis was gone
    first_task_after: float           # seconds from Redis back to the first new task's result
    beat_sends_before: int
    beat_sends_after: int             # sends logged in the `watch` seconds after the first task
    kept: dict                        # what survived the restart
    worker_log: str

    @property
    def persistence(self) -> str:
        return "AOF (appendonly yes)" if self.aof else "no persistence"


def left_behind(client, app) -> dict:
    """Put what a crash can lose into Redis; return the result's task id."""
    for number in range(3):
        app.send_task("tasks.add", [number, number], queue=PARKED)
    result = app.send_task("tasks.add", [20, 22])
    result.get(timeout=WAIT)
    lock = Lock(client, LOCK_NAME, timeout=600)
    lock.acquire(blocking=False)
    return {"result": result.id, "fence": lock.fence}


def what_is_left(client, before: dict) -> dict:
    fence = client.get(f"{LOCK_NAME}:fence")
    return {"queued messages": client.llen(PARKED),
            "result": client.exists(f"celery-task-meta-{before['result']}") == 1,
            "lock": client.exists(LOCK_NAME) == 1,
            "fence": int(fence) if fence else 0}


def restart_redis(aof: bool, down: float = 1.0, watch: float = 2.0) -> RestartOutcome:
    """The whole scene: Redis of its own, worker and beat on it, crash, restart, measure."""
    port = free_port()
    config = ["--appendonly", "yes", "--appendfsync", "always"] if aof else []
    with tempfile.TemporaryDirectory(prefix="lesson06-redis-") as workdir:
        server = RedisServer(port=port, config=config, workdir=workdir).start()
        url = server.url
        env = {"REDIS_URL": url, "MAIL_EVERY": "0.5", "EXTRACT_EVERY": "3600"}
        worker, beat = Worker("restart1", env=env), Beat("restart-beat", env=env)
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            worker.start(), beat.start()
            worker.wait_ready(), beat.wait_ready()
            app = producer_for(url)
            before = left_behind(client, app)
            # appendfsync always: every write is on disk before Redis answers, so the crash
            # below loses nothing written (everysec, the usual choice, may lose the last second).
            server.kill()
            sends_before = len(beat.sends())
            time.sleep(down)
            server = RedisServer(port=port, config=config, workdir=workdir).start()
            back = time.time()
            kept = what_is_left(client, before)
            first = first_task_after(app, back)
            sends_after_mark = len(beat.sends())
            time.sleep(watch)
            return RestartOutcome(aof, down, first, sends_before,
                                  len(beat.sends()) - sends_after_mark, kept, worker.log_text())
        finally:
            worker.stop(), beat.stop()
            client.close()
            server.stop()


def first_task_after(app, back: float) -> float:
    """Send `add` right after Redis is back (the producer reconnects on its own, retrying the
    publish) and wait for the result; seconds from `back` to the result."""
    def sent():
        try:
            return app.send_task("tasks.add", [2, 3])
        except Exception:   # noqa: BLE001  the producer's retries ran out: try again
            return None
    result = wait_for(sent, WAIT, "the producer to reach Redis again")
    wait_for(lambda: result.ready(), WAIT, "the first task after the restart to run")
    return time.time() - back


def describe_restart(outcome: RestartOutcome) -> str:
    kept = ", ".join(f"{name}: {value}" for name, value in outcome.kept.items())
    return (f"{outcome.persistence:<21} down {outcome.down:g} s; first new task done "
            f"{outcome.first_task_after:.1f} s after Redis was back; beat sent "
            f"{outcome.beat_sends_after} more; kept: {kept}")
