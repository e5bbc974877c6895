"""Task patterns built on `locks.Lock`: a decorator per pattern, each under `@app.task(bind=True)`.

Usage (the Lesson 03 section of tasks.py)::

    from locks.patterns import exclusive, one_per_target, single_instance

    @app.task(bind=True)
    @single_instance(db)                        # the last run still going? skip this one
    def nightly_report(self): ...

    @app.task(bind=True)
    @exclusive(db, "outbox", wait=30)           # wait for my turn: one run at a time in the outbox
    def send_mail_from_queue_locked(self): ...

    @app.task(bind=True, rate_limit="20/s")
    @one_per_target(db, "target", max_retries=5)   # dave busy? come back later, with backoff
    def run_on_target(self, target): ...

The run's lock is `self.request.lock` (the request is Celery's per-run context, as
`self.request.retries` is): its `fence`, its `lost` event and `fenced_write`, so a body can
fence its writes and stop when its lease is lost::

    @app.task(bind=True)
    @exclusive(db, "outbox", wait=30)
    def send_mail_from_queue_locked(self):
        lock = self.request.lock
        email = next_pending()
        if lock.lost.is_set():                   # the lease ended: another run may have it
            raise LockLostError(...)
        send(email)
        lock.fenced_write(f"outbox:status:{email}", "sent")   # refused if a newer holder wrote

`db` is a function returning the redis.Redis that holds the locks, called in the worker at run
time. The locks are named "lock:<task name>", "lock:<name>" and "lock:<task name>:<target>".

`ttl` is the lease: the lock renews itself (a watchdog thread, every ttl/3) while the run lasts,
so it need not outlive the run, and a worker killed mid-run frees it after at most `ttl` seconds.
LOCK_CLASS is the one switch: redis-py's `redis.lock.Lock` works too, with a ttl longer than any
run (it does not renew itself).

A message redelivered after a crash (`acks_late=True`, the worker killed mid-run) finds the
dead run's lock still held until its lease ends. `single_instance` does not skip it, which would
report success for work never done: it retries the task once that lease has run out.

Two Celery signals tell whoever listens (the lessons' run timeline does) what a lock did, with
the task as the sender::

    from locks.patterns import lock_released, run_skipped

    @run_skipped.connect
    def count_skips(sender, lock_name, **kwargs): ...        # the lock was held: run skipped

    @lock_released.connect
    def note(sender, lock_name, held_from, held_until, **kwargs): ...   # time.time() values
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import random
import time

from celery.utils.dispatch import Signal
from redis.exceptions import LockNotOwnedError

from locks.lock import Lock

LOCK_CLASS = functools.partial(Lock, auto_renewal=True)

logger = logging.getLogger(__name__)

# Sent by single_instance when it skips a run because the lock is held: lock_name.
run_skipped = Signal(name="run_skipped")
# Sent when a run has let go of its lock: lock_name, and held_from, held_until (time.time()).
lock_released = Signal(name="lock_released")


def _lock(db, name: str, ttl: float, **options):
    return db().lock(name, timeout=ttl, lock_class=LOCK_CLASS, **options)


@contextlib.contextmanager
def _holding(lock, task):
    """Release `lock` when the run ends, say so when it was lost on the way, and tell listeners."""
    acquired_at = time.time()
    task.request.lock = lock
    try:
        yield lock
    finally:
        task.request.lock = None
        done_at = time.time()  # before the release: the window the lock guarded
        lost = getattr(lock, "lost", None)
        if lost is not None and lost.is_set():
            logger.warning("lock %s was lost during the run: another run may have started",
                           lock.name)
        try:
            lock.release()
        except LockNotOwnedError:  # expired, maybe someone else's now: the work is done anyway
            logger.warning("lock %s had expired when the run ended", lock.name)
        lock_released.send(sender=task, lock_name=lock.name, held_from=acquired_at,
                           held_until=done_at)


def single_instance(db, ttl: float = 10, name: str | None = None):
    """Run the task only if no other run of it is going on; otherwise skip this run.

    A redelivered message is not skipped but retried once the holder's lease has run out: the
    holder may be the crashed run of this very message.
    """
    def decorate(run):
        @functools.wraps(run)
        def wrapper(self, *args, **kwargs):
            lock = _lock(db, name or f"lock:{self.name}", ttl, blocking=False)
            if not lock.acquire():
                if _redelivered(self):
                    raise _retry_after_lease(self, lock)
                logger.info("%s: the previous run still holds %s, skipping", self.name, lock.name)
                run_skipped.send(sender=self, lock_name=lock.name)
                return None
            with _holding(lock, self):
                return run(self, *args, **kwargs)
        return wrapper
    return decorate


def _redelivered(task) -> bool:
    """Whether this message was delivered before (kombu sets it when it restores an unacked one)."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _retry_after_lease(task, lock):
    """The lock is likely the crashed run's own, its lease still running: come back after it."""
    remaining = max(lock.redis.pttl(lock.name), 0) / 1000 + 0.1
    logger.warning("%s: redelivered, and %s is still held (maybe by the crashed run): "
                   "retrying in %.1f s, when that lease has run out", task.name, lock.name,
                   remaining)
    return task.retry(countdown=remaining)


def exclusive(db, name: str, wait: float, ttl: float = 10):
    """Run the task body holding lock "lock:<name>"; wait up to `wait` s for it, then fail."""
    def decorate(run):
        @functools.wraps(run)
        def wrapper(self, *args, **kwargs):
            lock = _lock(db, f"lock:{name}", ttl, blocking=True, blocking_timeout=wait)
            if not lock.acquire():
                raise TimeoutError(f"{self.name}: lock {lock.name} still held after {wait} s")
            with _holding(lock, self):
                return run(self, *args, **kwargs)
        return wrapper
    return decorate


def backoff(retries: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2**retries)].

    The jitter matters: tasks turned away together would otherwise all come back together.
    """
    return random.uniform(0, min(cap, base * 2 ** retries))


def one_per_target(db, argument: str, max_retries: int, base: float = 1.0, cap: float = 30.0,
                   ttl: float = 10):
    """At most one run per value of the task's `argument` at a time; busy: retry later.

    Retry n waits `backoff(n, base, cap)` seconds; after `max_retries` retries the task fails
    with Celery's MaxRetriesExceededError, so a target that stays busy cannot pile up work.
    """
    def decorate(run):
        signature = inspect.signature(run)

        @functools.wraps(run)
        def wrapper(self, *args, **kwargs):
            call = signature.bind(self, *args, **kwargs)
            call.apply_defaults()
            target = call.arguments[argument]
            lock = _lock(db, f"lock:{self.name}:{target}", ttl, blocking=False)
            if not lock.acquire():
                retries = self.request.retries
                delay = backoff(retries, base, cap)
                if retries < max_retries:
                    logger.info("%s: %s is busy, retry %d in %.2f s", self.name, target,
                                retries + 1, delay)
                else:
                    logger.warning("%s: %s still busy after %d retries, giving up", self.name,
                                   target, retries)
                raise self.retry(countdown=delay, max_retries=max_retries)
            with _holding(lock, self):
                return run(self, *args, **kwargs)
        return wrapper
    return decorate
