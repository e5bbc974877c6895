"""Lesson 06's scenes: stopping a worker that holds work — warm, cold and soft shutdown, counted.

Usage (notebook 06a, tests/test_06_stop.py and `scripts/figures.py 06` call these)::

    >>> fates = shutdown_fates("warm")                  # SIGTERM, defaults
    >>> fates                                            # what became of each task it held
    {'running': 'finished', 'prefetched': 'back in queue', 'eta': 'back in queue'}
    >>> shutdown_fates("cold")["running"]                # SIGQUIT: killed mid-task, acked: lost
    >>> shutdown_fates("cold", reliable=True)["running"] # NOTHING_LOST: 5 s of soft shutdown

One worker, one pool process, holding three tasks when it is told to stop: a `data_extractor`
that is running (STARTED, polled), an `add` it prefetched (with the defaults: reserved, not
started; NOTHING_LOST prefetches nothing, so it stays in the queue), and an `add` with an ETA a
minute away (held in the worker's memory, unacknowledged, whatever the settings). How to stop:

- "warm": SIGTERM (what `docker stop`, systemd and Kubernetes send): running tasks finish.
- "cold": SIGQUIT (or Ctrl-C twice): running tasks are terminated at once — unless
  worker_soft_shutdown_timeout is set (NOTHING_LOST: 5 s), which gives them that long first.

On Redis, whatever the worker holds unacknowledged goes back to the queue as it stops
(kombu restores its unacked messages at shutdown); a task already acknowledged (the running
one, with the defaults) cannot go back.
"""
from __future__ import annotations

import json
import os
import signal

import redis

from labkit import Worker
from scenes.lesson_06_kill import WAIT, producer_for, wait_for, worker_env

SIGNALS = {"warm": signal.SIGTERM, "cold": signal.SIGQUIT}
QUEUE = "celery"


def shutdown_fates(how: str, reliable: bool = False, running_seconds: float = 2.5,
                   url: str | None = None, prefix: str = "stop") -> dict:
    """Start a worker, give it a running, a prefetched and an ETA task, stop it `how`; the fate
    of each: "finished", "back in queue", "held unacked" or "lost (<state>)"."""
    if how not in SIGNALS:
        raise ValueError(f"how is one of {', '.join(SIGNALS)}, not {how!r}")
    app = producer_for(url)
    client = redis.Redis.from_url(url or os.environ["REDIS_URL"], decode_responses=True)
    worker = Worker(f"{prefix}-{how}", env=worker_env(url, reliable, 60))
    try:
        worker.start().wait_ready()
        held = hand_work(app, client, worker, reliable, running_seconds)
        worker.signal(SIGNALS[how])
        worker.process.wait(WAIT)
        return {role: fate(result, client) for role, result in held.items()}
    finally:
        worker.stop()
        client.close()


def hand_work(app, client, worker: Worker, reliable: bool, running_seconds: float) -> dict:
    """Give `worker` its three tasks; return once it holds them as described above."""
    # The ETA task first: a worker takes one however full its prefetch is (it raises its own
    # limit by one for each), but only while it is still fetching at all.
    eta = app.send_task("tasks.add", [2, 2], countdown=60)
    running = app.send_task("tasks.data_extractor", [running_seconds])
    wait_for(lambda: running.state == "STARTED", WAIT, "the long task to start")
    prefetched = app.send_task("tasks.add", [1, 1])
    inspect = app.control.inspect(destination=[worker.nodename], timeout=2.0)

    def holding() -> bool:
        scheduled = (inspect.scheduled() or {}).get(worker.nodename, [])
        if not any(entry["request"]["id"] == eta.id for entry in scheduled):
            return False
        if reliable:   # it prefetches nothing: the second task must still be queued
            return prefetched.id in queued_ids(client)
        return any(entry["id"] == prefetched.id
                   for entry in (inspect.reserved() or {}).get(worker.nodename, []))
    wait_for(holding, WAIT, "the worker to hold its tasks")
    return {"running": running, "prefetched": prefetched, "eta": eta}


def queued_ids(client, queue: str = QUEUE) -> list[str]:
    """Task ids of the messages waiting in `queue` (a Redis list of JSON messages)."""
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


def unacked_ids(client) -> list[str]:
    """Task ids of the messages some worker holds unacknowledged (kombu's "unacked" hash)."""
    return [json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")]


def fate(result, client) -> str:
    if result.state == "SUCCESS":
        return "finished"
    if result.id in queued_ids(client):
        return "back in queue"
    if result.id in unacked_ids(client):
        return "held unacked"
    return f"lost ({result.state})"


def shutdown_table(rows: dict) -> str:
    """{label: fates} as aligned text lines, one per way of stopping."""
    lines = [f"{'':<34}{'running':<18}{'prefetched':<18}{'ETA in 60 s':<18}"]
    for label, fates in rows.items():
        lines.append(f"{label:<34}" + "".join(f"{fates[role]:<18}"
                                             for role in ("running", "prefetched", "eta")))
    return "\n".join(lines)
