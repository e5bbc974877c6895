"""Flower, Celery's web monitor, as a real process: start it, wait until its HTTP API answers, ask.

Usage::

    >>> with Flower(port=5555) as flower:          # `celery -A tasks flower` on 127.0.0.1:5555
    ...     flower.wait_until_listening(fleet.names)   # it hears their events (workers with -E)
    ...     flower.workers()                        # {'worker1@host': {...}, ...}: who is online
    ...     flower.tasks()                          # {task id: {"state", "name", ...}}: from events
    ...     flower.task(task_id)                    # one task as Flower saw it
    # leaving the block stops it

Flower reads two things: the workers it asks over the broker (`inspect`), and the **events** the
workers publish through the broker — never the result backend. It switches the workers' task
events on itself (like `-E` on each worker), and sees only what is sent while it listens.

It binds to loopback only. Its HTTP API (`/api/...`) answers without a login only with
FLOWER_UNAUTHENTICATED_API set, which this class sets for its own process: on a shared machine,
give Flower `--basic-auth` or an OAuth login instead, and never expose it: it can revoke tasks
and shut workers down.
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from labkit.processes import CeleryProcess
from labkit.redis_server import free_port

API_TIMEOUT = 30.0


class Flower(CeleryProcess):
    """`celery -A tasks flower --address=127.0.0.1 --port=<port>` with its API switched on."""

    ready_pattern = re.compile(r"Visit me at http")

    def __init__(self, name: str = "flower", port: int | None = None,
                 extra_args: list[str] | None = None, env: dict | None = None,
                 log_dir: Path | None = None):
        self.port = port or free_port()
        args = ["flower", "--address=127.0.0.1", f"--port={self.port}"]
        env = {"FLOWER_UNAUTHENTICATED_API": "true", **(env or {})}
        super().__init__(name, args + list(extra_args or []), env, log_dir)

    def stop(self, timeout: float = 10.0, graceful: bool = False) -> None:
        """Stop it at once (SIGKILL) unless `graceful`: this Flower keeps nothing to save, and
        its SIGTERM handler exits through its threads, which can wait on a broker that is
        already gone; a stuck one outlived a notebook kernel that was killed meanwhile."""
        super().stop(timeout, graceful)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = API_TIMEOUT) -> "Flower":
        """Until its log says it listens and its API answers (Flower is up, and reachable)."""
        deadline = time.monotonic() + timeout
        super().wait_ready(timeout)
        while time.monotonic() < deadline:
            try:
                self.get("/api/workers?refresh=1")
                return self
            except (OSError, ValueError):
                time.sleep(0.2)
        raise TimeoutError(f"Flower's API at {self.url} did not answer in {timeout:.0f} s")

    def get(self, path: str, timeout: float = 10.0):
        """GET `path` of Flower's HTTP API; the JSON it answers."""
        with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
            return json.loads(answer.read().decode())

    def workers(self, refresh: bool = True) -> dict:
        """The workers Flower knows, by name (`refresh`: ask them now, not from its cache)."""
        return self.get("/api/workers" + ("?refresh=1" if refresh else ""))

    def online(self) -> dict:
        """{worker name: True/False} from the workers' heartbeat EVENTS, not from asking them:
        a worker shows here only once Flower receives its events."""
        return self.get("/api/workers?status=1")

    def wait_until_listening(self, names, timeout: float = API_TIMEOUT) -> "Flower":
        """Until Flower has heard events from every worker in `names`: from then on it sees
        every task event they send. (Events are not stored: what was sent before is lost.)"""
        self.wait_for(lambda flower: all(flower.online().get(name) for name in names), timeout)
        return self

    def tasks(self, limit: int = 100) -> dict:
        """The tasks Flower has seen events of, by id: name, state, worker, args, result…"""
        return self.get(f"/api/tasks?limit={limit}")

    def task(self, task_id: str) -> dict:
        """One task as Flower's events built it; {} if Flower has seen no event of it."""
        try:
            return self.get(f"/api/task/info/{task_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {}
            raise

    def wait_for(self, condition, timeout: float = API_TIMEOUT, every: float = 0.2):
        """Poll `condition(self)` until it returns something true; that, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = condition(self)
            if seen:
                return seen
            time.sleep(every)
        raise TimeoutError(f"Flower did not show it within {timeout:.0f} s")
