"""The outbox: pending emails in Redis, sent by whichever worker reads them first.

Usage (`tasks.py` makes one, `outbox = Outbox(db)`; producers and notebooks use it as
`tasks.outbox`)::

    >>> outbox.fill(9)                  # replace it with 9 pending emails; their ids
    ['0001', ..., '0009']
    >>> outbox.send_next("worker1@host", pause=0.3)   # what a send task does; the id it sent
    '0001'
    >>> outbox.report()                 # who sent what, and what was sent more than once
    {'sent_by': {'worker1@host': ['0001']}, 'deliveries': 1, 'sent_more_than_once': [], ...}

`send_next` is ordinary read-then-write code on purpose: two workers can read the same pending
email before either marks it sent, and both send it. Lesson 03 shows that race happening and
fixes it with a lock around the whole read → send → mark step.
"""
from __future__ import annotations

import json
import time

MESSAGES = "outbox:messages"      # hash: message id -> JSON {"to", "subject"}
STATUS = "outbox:status"          # hash: message id -> "pending" | "sent"
DELIVERIES = "outbox:deliveries"  # list: one JSON {"message", "worker"} per email sent
CLAIMED_BY = "outbox:claimed-by:"  # + id: who claimed it under the lock (a fenced write)


class Outbox:
    """The outbox in the Redis that `client()` returns (called on every use, so it can be lazy)."""

    def __init__(self, client):
        self.client = client

    def fill(self, count: int) -> list[str]:
        """Replace the outbox with `count` pending emails; return their ids."""
        ids = [f"{number:04d}" for number in range(1, count + 1)]
        pipe = self.client().pipeline()
        pipe.delete(MESSAGES, STATUS, DELIVERIES)
        for key in self.client().scan_iter(f"{CLAIMED_BY}*"):   # and the claims' fences
            pipe.delete(key)
        for message_id in ids:
            email = {"to": f"user{message_id}@example.com", "subject": f"Your report #{message_id}"}
            pipe.hset(MESSAGES, message_id, json.dumps(email))
            pipe.hset(STATUS, message_id, "pending")
        pipe.execute()
        return ids

    def next_pending(self) -> str | None:
        statuses = self.client().hgetall(STATUS)
        return min((id_ for id_, status in statuses.items() if status == "pending"), default=None)

    def send_next(self, worker: str, pause: float = 0.0, lock=None) -> str | None:
        """Send the next pending email as `worker`; its id, or None when the outbox is empty.

        `pause` (seconds) widens the gap between reading and writing, to make the race visible.
        `lock`, a held locks.Lock: before sending, the email is claimed with a fenced write, which
        fails (LockLostError, StaleFenceError) for a holder that may have lost its lock — a
        holder paused past its lease sends nothing.
        """
        message_id = self.next_pending()                             # read
        if message_id is None:
            return None
        time.sleep(pause)
        if lock is not None:
            lock.fenced_write(f"{CLAIMED_BY}{message_id}", worker)  # still ours? else it raises
        delivery = {"message": message_id, "worker": worker}
        self.client().rpush(DELIVERIES, json.dumps(delivery))       # "send" the email
        self.client().hset(STATUS, message_id, "sent")              # write
        return message_id

    def report(self) -> dict:
        """Who sent what: {"sent_by": {worker: [ids]}, "sent_more_than_once": [ids], ...}."""
        deliveries = [json.loads(entry) for entry in self.client().lrange(DELIVERIES, 0, -1)]
        sent_by: dict[str, list[str]] = {}
        times_sent: dict[str, int] = {}
        for delivery in deliveries:
            sent_by.setdefault(delivery["worker"], []).append(delivery["message"])
            times_sent[delivery["message"]] = times_sent.get(delivery["message"], 0) + 1
        statuses = self.client().hgetall(STATUS)
        return {
            "sent_by": sent_by,
            "deliveries": len(deliveries),
            "sent_more_than_once": sorted(id_ for id_, times in times_sent.items() if times > 1),
            "pending": sum(1 for status in statuses.values() if status == "pending"),
            "messages": len(statuses),
        }
