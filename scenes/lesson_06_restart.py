"""Lesson 06's scene: Redis restarted under running workers and beat, without and with AOF.

Usage (notebook 06b, tests/test_06_restart.py and `scripts/figures.py 06` call these)::

    >>> outcome = restart_redis(aof=False)      # a Redis of its own, crashed (SIGKILL), restarted
    >>> outcome.first_task_after                # seconds from "Redis is back" to a task's result
    >>> outcome.kept                            # {'queued messages': 0, 'result': False, ...}
    >>> restart_redis(aof=True).kept            # appendonly yes: everything is still there
    >>> scene = RestartScene(aof=True).start()  # started ahead (notebook 06b), played later:
    >>> scene.run(); scene.stop()

The scene starts a Redis of its own on a fixed port (never the session's or a user's), a worker
and beat (sending `send-mail` every 0.5 s) on it, and before the crash leaves four things in it:
3 messages in a queue no worker serves, a task result, a lock held with lesson 03's
`locks.Lock`, and that lock's fence counter. It SIGKILLs Redis (a crash: no final save),
keeps it down for `down` seconds, and starts it again on the same port and the same --dir.
Then it sends one `add` at once, waits for its result, and counts beat's sends after that
(watching `watch` seconds, and until beat has sent at least once more).
Nobody is restarted by hand: the worker, beat and this producer reconnect by themselves.
"""
from __future__ import annotations

import dataclasses
import signal
import tempfile
import time

import redis

from labkit import Beat, RedisServer, Worker
from labkit.redis_server import free_port
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
    beat_sends_after: int             # sends logged in the `watch` s after the first task (≥ 1)
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


class RestartScene:
    """A Redis of its own with a worker and beat on it, for one crash; see the module doc.

    start() starts them (without waiting: notebook 06b starts the next scene's while one runs),
    run() waits until they are ready and plays the scene, stop() stops everything."""

    def __init__(self, aof: bool):
        self.aof = aof
        self.config = ["--appendonly", "yes", "--appendfsync", "always"] if aof else []
        self.workdir = self.server = self.worker = self.beat = None

    def start(self) -> "RestartScene":
        self.workdir = tempfile.TemporaryDirectory(prefix="lesson06-redis-")
        self.server = RedisServer(port=free_port(), config=self.config,
                                  workdir=self.workdir.name).start()
        env = {"REDIS_URL": self.server.url, "MAIL_EVERY": "0.5", "EXTRACT_EVERY": "3600"}
        suffix = "-aof" if self.aof else ""
        self.worker = Worker("restart" + suffix, env=env).start()
        self.beat = Beat("restart-beat" + suffix, env=env).start()
        return self

    def wait_ready(self) -> "RestartScene":
        self.worker.wait_ready(), self.beat.wait_ready()
        return self

    def run(self, down: float = 1.0, watch: float = 1.0) -> RestartOutcome:
        """Leave things in Redis, crash it, keep it down `down` s, start it again on the same
        port and --dir; measure the first task after, and beat's sends in `watch` s (at least
        one: waited for)."""
        self.wait_ready()
        url, port = self.server.url, self.server.port
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            app = producer_for(url)
            before = left_behind(client, app)
            # appendfsync always: every write is on disk before Redis answers, so the crash
            # below loses nothing written (everysec, the usual choice, may lose the last second).
            self.server.kill()
            sends_before = len(self.beat.sends())
            time.sleep(down)
            self.server = RedisServer(port=port, config=self.config,
                                      workdir=self.workdir.name).start()
            back = time.time()
            kept = what_is_left(client, before)
            first = first_task_after(app, back)
            mark = len(self.beat.sends())
            watched = time.monotonic() + watch
            wait_for(lambda: time.monotonic() > watched and len(self.beat.sends()) > mark,
                     WAIT, "beat to send again")
            return RestartOutcome(self.aof, down, first, sends_before,
                                  len(self.beat.sends()) - mark, kept, self.worker.log_text())
        finally:
            client.close()

    def dismiss(self) -> None:
        """Begin the worker's and beat's warm shutdowns; stop() finishes."""
        for process in (self.worker, self.beat):
            if process is not None:
                process.signal(signal.SIGTERM)

    def stop(self) -> None:
        self.dismiss()
        for process in (self.worker, self.beat, self.server):
            if process is not None:
                process.stop()
        if self.workdir is not None:
            self.workdir.cleanup()

    def __enter__(self) -> "RestartScene":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def restart_redis(aof: bool, down: float = 1.0, watch: float = 1.0) -> RestartOutcome:
    """The whole scene in one call: Redis of its own, worker and beat on it, crash, restart."""
    with RestartScene(aof) as scene:
        return scene.run(down, watch)


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
