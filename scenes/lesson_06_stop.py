"""Lesson 06's scenes: stopping a worker that holds work — warm, cold and soft shutdown, counted.

Usage (notebook 06b, tests/test_06_stop.py and `scripts/figures.py 06` call these)::

    >>> fates = shutdown_fates("warm")                  # SIGTERM, defaults, a 1.5 s task
    >>> fates                                            # what became of each task it held
    {'running': 'finished', 'prefetched': 'back in queue', 'eta': 'back in queue'}
    >>> shutdown_fates("cold")["running"]                # SIGQUIT: killed mid-task, acked: lost
    >>> shutdown_fates("cold", reliable=True)["running"] # NOTHING_LOST: 5 s of soft shutdown
    >>> worker = shutdown_worker("warm").start()         # started ahead (notebook 06b), then
    >>> shutdown_fates("warm", worker=worker)            # the same scene on it

One worker, one pool process, holding three tasks when it is told to stop: a `data_extractor`
that is running (STARTED, polled), an `add` it prefetched (with the defaults: reserved, not
started; NOTHING_LOST prefetches nothing, so it stays in the queue), and an `add` with an ETA a
minute away (held in the worker's memory, unacknowledged, whatever the settings). How to stop:

- "warm": SIGTERM (what `docker stop`, systemd and Kubernetes send): running tasks finish.
- "cold": SIGQUIT (or Ctrl-C twice): running tasks are terminated at once — unless
  worker_soft_shutdown_timeout is set (NOTHING_LOST: 5 s), which gives them that long first.
  A soft shutdown waits that whole time, even once no task runs any more (Celery 5.5–5.7's
  Worker.wait_for_soft_shutdown sleeps it; with worker_enable_soft_shutdown_on_idle, always):
  `soft_timeout` shortens it for a scene.

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
RUNNING_SECONDS = 1.5
QUEUE = "celery"


def shutdown_worker(how: str, reliable: bool = False, url: str | None = None,
                    prefix: str = "stop", soft_timeout: float | None = None) -> Worker:
    """The worker a shutdown scene stops (not started yet), on a queue of its own.
    `soft_timeout`: its worker_soft_shutdown_timeout instead of NOTHING_LOST's 5 s (Celery reads
    settings given after `--` on the worker's command line)."""
    if how not in SIGNALS:
        raise ValueError(f"how is one of {', '.join(SIGNALS)}, not {how!r}")
    name = f"{prefix}-{how}" + ("-nothing-lost" if reliable else "")
    settings = [] if soft_timeout is None else [
        "--", f"worker_soft_shutdown_timeout={soft_timeout:g}"]
    return Worker(name, env=worker_env(url, reliable, 60), queues=[queue_of(name)],
                  extra_args=settings)


def queue_of(worker_name: str) -> str:
    return f"lesson06-{worker_name}"


def shutdown_fates(how: str, reliable: bool = False, running_seconds: float = RUNNING_SECONDS,
                   url: str | None = None, prefix: str = "stop",
                   soft_timeout: float | None = None, worker: Worker | None = None) -> dict:
    """Give a worker a running, a prefetched and an ETA task, stop it `how`; the fate of each:
    "finished", "back in queue", "held unacked" or "lost (<state>)". `worker`: one from
    shutdown_worker(how, reliable, url, soft_timeout=…), started ahead; else one started here."""
    worker = worker or shutdown_worker(how, reliable, url, prefix, soft_timeout)
    app = producer_for(url)
    client = redis.Redis.from_url(url or os.environ["REDIS_URL"], decode_responses=True)
    queue = queue_of(worker.name)
    try:
        if not worker.is_running():
            worker.start()
        worker.wait_ready()
        held = hand_work(app, client, queue, reliable, running_seconds)
        worker.signal(SIGNALS[how])
        worker.process.wait(WAIT)
        return {role: fate(result, client, queue) for role, result in held.items()}
    finally:
        worker.stop()
        client.close()


def hand_work(app, client, queue: str, reliable: bool, running_seconds: float) -> dict:
    """Give the worker on `queue` its three tasks; return once it holds them as described above.
    What a worker holds is in Redis: kombu keeps each message it delivered to a worker in the
    "unacked" hash until the worker acknowledges it (the running task, with the defaults, is
    acknowledged as it starts)."""
    # The ETA task first: a worker takes one however full its prefetch is (it raises its own
    # limit by one for each), but only while it is still fetching at all.
    eta = app.send_task("tasks.add", [2, 2], countdown=60, queue=queue)
    running = app.send_task("tasks.data_extractor", [running_seconds], queue=queue)
    wait_for(lambda: running.state == "STARTED", WAIT, "the long task to start")
    prefetched = app.send_task("tasks.add", [1, 1], queue=queue)

    def holding() -> bool:
        held = unacked_ids(client)
        if eta.id not in held:
            return False
        if reliable:   # it prefetches nothing: the second task must still be queued
            return prefetched.id in queued_ids(client, queue)
        return prefetched.id in held
    wait_for(holding, WAIT, "the worker to hold its tasks")
    if running.state != "STARTED":   # the stop must find it running: say so, never mislead
        raise RuntimeError(f"the {running_seconds:g} s task ended before the stop: too short "
                           "for this machine's load; pass a larger running_seconds")
    return {"running": running, "prefetched": prefetched, "eta": eta}


def queued_ids(client, queue: str = QUEUE) -> list[str]:
    """Task ids of the messages waiting in `queue` (a Redis list of JSON messages)."""
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


def unacked_ids(client) -> list[str]:
    """Task ids of the messages some worker holds unacknowledged (kombu's "unacked" hash)."""
    return [json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")]


def fate(result, client, queue: str = QUEUE) -> str:
    if result.state == "SUCCESS":
        return "finished"
    if result.id in queued_ids(client, queue):
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
