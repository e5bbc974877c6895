"""The Celery app and its tasks: what the notebooks and `invoker.py` send, what workers run.

Usage::

    (terminal 1)$ make redis                     # or your own redis-server on localhost:6379
    (terminal 2)$ celery -A tasks worker --loglevel=info -n worker1@%h
    (terminal 3)$ celery -A tasks worker --loglevel=info -n worker2@%h
    (terminal 4)$ python invoker.py add 2 3
    5
    (terminal 4)$ python invoker.py mail --count 10      # which worker sent which email

Settings come from the environment:

    REDIS_URL               redis://localhost:6379/0 unless set; broker and result backend use it
    CELERY_BROKER_URL       overrides the broker only
    CELERY_RESULT_BACKEND   overrides the result backend only

After you edit this file, restart the workers: a running worker keeps the code it started with.
"""
from __future__ import annotations

import json
import os
import time
from functools import lru_cache

import redis
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

app = Celery("tasks")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", REDIS_URL),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL),
    # JSON only: a worker that accepts pickle runs whatever code a message carries.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    result_expires=3600,              # results are kept one hour, then Redis drops them
    task_track_started=True,          # STARTED is reported, not only PENDING → SUCCESS
    result_extended=True,             # results also name their task, arguments and worker
    broker_connection_retry_on_startup=True,
    # One message at a time per pool process, so tasks spread across workers as you watch
    # (the default prefetches 4 each, and one worker can hoard a whole burst).
    worker_prefetch_multiplier=1,
    # A producer with no broker gives up after a few seconds instead of retrying for ever.
    broker_connection_timeout=3,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    redis_socket_connect_timeout=3,
)


@lru_cache(maxsize=None)
def db() -> redis.Redis:
    """The Redis that holds the lesson data (the outbox); the broker's, unless told otherwise."""
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


# --- Arithmetic: the smallest tasks, to see producer → broker → worker → result ----------------

@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def divide(x, y):
    """Fails for y == 0: the ZeroDivisionError travels back to the producer as the result."""
    return x / y


# --- The outbox: one shared record, several workers ------------------------------------------
# Pending emails live in Redis. `send_mail_from_queue` takes the next pending one, "sends" it
# (records who sent it) and marks it sent. It is ordinary read-then-write code on purpose:
# two workers can read the same pending email before either marks it sent, and both send it.
# Lesson 03 shows that race happening and fixes it with a lock.

OUTBOX_MESSAGES = "outbox:messages"      # hash: message id -> JSON {"to", "subject"}
OUTBOX_STATUS = "outbox:status"          # hash: message id -> "pending" | "sent"
OUTBOX_DELIVERIES = "outbox:deliveries"  # list: one JSON {"message", "worker"} per email sent


def fill_outbox(count: int) -> list[str]:
    """Replace the outbox with `count` pending emails; return their ids."""
    ids = [f"{number:04d}" for number in range(1, count + 1)]
    pipe = db().pipeline()
    pipe.delete(OUTBOX_MESSAGES, OUTBOX_STATUS, OUTBOX_DELIVERIES)
    for message_id in ids:
        email = {"to": f"user{message_id}@example.com", "subject": f"Your report #{message_id}"}
        pipe.hset(OUTBOX_MESSAGES, message_id, json.dumps(email))
        pipe.hset(OUTBOX_STATUS, message_id, "pending")
    pipe.execute()
    return ids


def next_pending_message() -> str | None:
    pending = [id_ for id_, status in db().hgetall(OUTBOX_STATUS).items() if status == "pending"]
    return min(pending, default=None)


def outbox_report() -> dict:
    """Who sent what: {"sent_by": {worker: [ids]}, "sent_more_than_once": [ids], "pending": n, ...}."""
    deliveries = [json.loads(entry) for entry in db().lrange(OUTBOX_DELIVERIES, 0, -1)]
    sent_by: dict[str, list[str]] = {}
    times_sent: dict[str, int] = {}
    for delivery in deliveries:
        sent_by.setdefault(delivery["worker"], []).append(delivery["message"])
        times_sent[delivery["message"]] = times_sent.get(delivery["message"], 0) + 1
    statuses = db().hgetall(OUTBOX_STATUS)
    return {
        "sent_by": sent_by,
        "deliveries": len(deliveries),
        "sent_more_than_once": sorted(id_ for id_, times in times_sent.items() if times > 1),
        "pending": sum(1 for status in statuses.values() if status == "pending"),
        "messages": len(statuses),
    }


@app.task(bind=True)
def send_mail_from_queue(self, pause: float = 0.0):
    """Send the next pending email; return its id, or None when the outbox is empty.

    `pause` (seconds) widens the gap between reading and writing, to make the race visible.
    """
    message_id = next_pending_message()                      # read
    if message_id is None:
        return None
    time.sleep(pause)
    delivery = {"message": message_id, "worker": self.request.hostname}
    db().rpush(OUTBOX_DELIVERIES, json.dumps(delivery))      # "send" the email
    db().hset(OUTBOX_STATUS, message_id, "sent")             # write
    return message_id


# --- A slow job ------------------------------------------------------------------------------

@app.task(bind=True)
def data_extractor(self, seconds: float = 2.0):
    """Pretend to extract data for `seconds`; report which worker did it and when."""
    started = time.time()
    time.sleep(seconds)
    return {"worker": self.request.hostname, "started": started, "seconds": seconds}


# --- Lesson 03: tasks that take a lock -------------------------------------------------------
# Each pattern is a decorator from locks/patterns.py, placed under @app.task(bind=True).

from locks.patterns import exclusive, one_per_target  # noqa: E402  (lesson order, not PEP 8's)


@app.task(bind=True)
@exclusive(db, "outbox", ttl=30, wait=60)
def send_mail_from_queue_locked(self, pause: float = 0.0):
    """`send_mail_from_queue` with its read-then-write under one lock: every email is sent once.

    The lock covers the whole read → send → mark-sent step; a lock around the write alone would
    still let two workers read the same pending email.
    """
    message_id = next_pending_message()                      # read
    if message_id is None:
        return None
    time.sleep(pause)
    delivery = {"message": message_id, "worker": self.request.hostname}
    db().rpush(OUTBOX_DELIVERIES, json.dumps(delivery))      # "send" the email
    db().hset(OUTBOX_STATUS, message_id, "sent")             # write
    return message_id


# One task per target at a time: a run for a busy target (dave is already being worked on) retries
# later, after an exponential backoff with jitter, at most TARGET_MAX_RETRIES times. The rate limit
# is per worker; run the workers with --concurrency=3. Times are seconds, settable to compress them.
TARGET_MAX_RETRIES = int(os.environ.get("TARGET_MAX_RETRIES", "5"))
TARGET_BACKOFF = float(os.environ.get("TARGET_BACKOFF", "1.0"))      # first retry within this
TARGET_BACKOFF_CAP = float(os.environ.get("TARGET_BACKOFF_CAP", "30"))


@app.task(bind=True, rate_limit=os.environ.get("TARGET_RATE_LIMIT", "20/s"))
@one_per_target(db, "target", ttl=300, max_retries=TARGET_MAX_RETRIES,
                base=TARGET_BACKOFF, cap=TARGET_BACKOFF_CAP)
def run_on_target(self, target: str, seconds: float = 1.0):
    """Work on `target` (a host, an account, a user: "dave") for `seconds`, alone."""
    time.sleep(seconds)
    return {"target": target, "worker": self.request.hostname, "retries": self.request.retries}
