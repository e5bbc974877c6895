"""Task patterns built on a Redis lock: one decorator per pattern, each under `@app.task(bind=True)`.

Usage (see the Lesson 03 section of tasks.py)::

    from locks.patterns import single_instance, exclusive, one_per_target

    @app.task(bind=True)
    @single_instance(db, ttl=60)                # a run that finds the last one still going is skipped
    def nightly_report(self): ...

    @app.task(bind=True)
    @exclusive(db, "outbox", ttl=10, wait=30)   # waits its turn: one run at a time touches the outbox
    def send_mail_from_queue_locked(self): ...

    @app.task(bind=True, rate_limit="20/s")
    @one_per_target(db, "target", ttl=30, max_retries=5)   # dave busy? retry later, with backoff
    def run_on_target(self, target): ...

`db` is a function returning the redis.Redis that holds the locks (called at run time, in the
worker). Locks are `LOCK_CLASS`: `locks.Lock` when it is there, else redis-py's `redis.lock.Lock`
(same constructor and methods), so switching is this one line. The lock names are
"lock:<task name>" and "lock:<name>", and the TTL must outlive a run unless the lock renews itself.
"""
from __future__ import annotations

import functools
import inspect
import logging
import random

from redis.exceptions import LockNotOwnedError

try:
    from locks import Lock as LOCK_CLASS        # the fenced, self-renewing lock of this lesson
except ImportError:                             # (until it is there: redis-py's, same interface)
    from redis.lock import Lock as LOCK_CLASS

logger = logging.getLogger(__name__)


def _record(outcome: str) -> None:
    """Tell the run timeline how this run ended, when the timeline is there."""
    try:
        from labkit import timeline
    except ImportError:
        return
    timeline.set_outcome(outcome)


def _release(lock) -> None:
    # An expired lock may already be someone else's: saying so beats failing a run that did its work.
    try:
        lock.release()
    except LockNotOwnedError:
        logger.warning("lock %s expired before the run ended: raise its ttl", lock.name)


def single_instance(db, ttl: float, name: str | None = None, lock_class=None):
    """Run the task only if no other run of it is going on; otherwise skip this run."""
    def decorate(run):
        @functools.wraps(run)
        def wrapper(self, *args, **kwargs):
            lock = db().lock(name or f"lock:{self.name}", timeout=ttl, blocking=False,
                             lock_class=lock_class or LOCK_CLASS)
            if not lock.acquire():
                logger.info("%s: the previous run still holds %s, skipping", self.name, lock.name)
                _record("skipped")
                return None
            try:
                return run(self, *args, **kwargs)
            finally:
                _release(lock)
        return wrapper
    return decorate


def exclusive(db, name: str, ttl: float, wait: float, lock_class=None):
    """Run the task body while holding lock "lock:<name>", waiting up to `wait` s for it."""
    def decorate(run):
        @functools.wraps(run)
        def wrapper(self, *args, **kwargs):
            lock = db().lock(f"lock:{name}", timeout=ttl, blocking=True, blocking_timeout=wait,
                             lock_class=lock_class or LOCK_CLASS)
            if not lock.acquire():
                raise TimeoutError(f"{self.name}: lock {lock.name} still held after {wait} s")
            try:
                return run(self, *args, **kwargs)
            finally:
                _release(lock)
        return wrapper
    return decorate


def backoff(retries: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2**retries)].

    The jitter matters: tasks turned away together would otherwise all come back together.
    """
    return random.uniform(0, min(cap, base * 2 ** retries))


def one_per_target(db, argument: str, ttl: float, max_retries: int,
                   base: float = 1.0, cap: float = 30.0, lock_class=None):
    """At most one run per value of `argument` at a time; a busy target means: retry later.

    The retry delay is `backoff(retries, base, cap)`; after `max_retries` retries the run fails
    with celery's MaxRetriesExceededError, so a target that stays busy cannot queue work for ever.
    """
    def decorate(run):
        signature = inspect.signature(run)

        @functools.wraps(run)
        def wrapper(self, *args, **kwargs):
            call = signature.bind(self, *args, **kwargs)
            call.apply_defaults()
            target = call.arguments[argument]
            lock = db().lock(f"lock:{self.name}:{target}", timeout=ttl, blocking=False,
                             lock_class=lock_class or LOCK_CLASS)
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
            try:
                return run(self, *args, **kwargs)
            finally:
                _release(lock)
        return wrapper
    return decorate
