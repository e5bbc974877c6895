"""One holding of a lock: its token and fence, when its lease ends at the latest, and the watchdog
that renews it. `locks.Lock` keeps one `Lease` per holder (per thread with redis-py's default
`thread_local=True`), so threads sharing a Lock object never read or stop each other's.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Optional

import redis

logger = logging.getLogger("locks.lock")

# Redis counts a TTL on its own clock, the holder on its own: allow for the two running at
# slightly different rates, as Redlock does (1 % of the TTL, plus 2 ms).
CLOCK_DRIFT_FACTOR = 0.01
CLOCK_DRIFT_S = 0.002


def lease_end(sent_at: float, ttl_s: float) -> float:
    """The latest a lease can last (time.monotonic()), given when the request that set its TTL
    was sent: the server received it no earlier, so its TTL started no earlier."""
    return sent_at + ttl_s * (1 - CLOCK_DRIFT_FACTOR) - CLOCK_DRIFT_S


class LeaseLost(threading.Event):
    """`lock.lost`: set once this holder may no longer hold the lock.

    Set when a renewal is refused, and also — read at any moment, with no thread having to run —
    once the deadline `ends_at` has passed: the end of the last lease the holder knows was set,
    counted from before its request was sent. So it is true before anyone else can take the lock,
    even while a renewal request hangs on a dead connection. Once set it stays set.
    `ends_at` None: no deadline is tracked (a lock without auto-renewal), a plain Event.
    """

    def __init__(self, ends_at: Optional[float] = None):
        super().__init__()
        self.ends_at = ends_at

    def is_set(self) -> bool:
        if not super().is_set() and self.ends_at is not None and time.monotonic() >= self.ends_at:
            self.set()
        return super().is_set()

    isSet = is_set

    def wait(self, timeout: Optional[float] = None) -> bool:
        give_up_at = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            now = time.monotonic()
            waits = [at - now for at in (self.ends_at, give_up_at) if at is not None]
            if waits and min(waits) <= 0:
                return self.is_set()
            super().wait(min(waits) if waits else None)  # woken early by set(); else re-check
        return True

    def renewed_until(self, ends_at: float) -> None:
        """A renewal confirmed the lease until `ends_at` — unless the holder was already told."""
        if not self.is_set():
            self.ends_at = ends_at


class Lease:
    """One holder's hold on a lock (one token)."""

    __slots__ = ("token", "fence", "ends_at", "_lost", "watchdog", "__weakref__")

    def __init__(self, token: bytes, fence: int, ends_at: Optional[float] = None):
        self.token = token
        self.fence = fence
        # the first deadline `lost` counts from (None: not tracked); renewals move lost.ends_at
        self.ends_at = ends_at
        # A tracked lease makes its Event now, before any other thread can see the lease (two
        # threads sharing a Lock must never get two Events). An untracked one (no auto-renewal:
        # nothing ever sets it) makes it on first use: an Event costs about 4 µs, a few % of an
        # uncontended acquire + release cycle, and most such holders never look at it.
        self._lost: Optional[LeaseLost] = LeaseLost(ends_at) if ends_at is not None else None
        self.watchdog: Optional[Watchdog] = None

    @property
    def lost(self) -> LeaseLost:
        if self._lost is None:
            self._lost = LeaseLost(None)   # a plain Event: a second one made by a race is as good
        return self._lost

    def stop_renewing(self) -> None:
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            watchdog.stop()


class Watchdog(threading.Thread):
    """Resets one lease's TTL every `interval` seconds until stopped, refused, or forgotten.

    It holds only a weak reference to its Lease: a lease nobody can reach any more (the Lock
    object dropped without a release, or its thread gone with the thread-local token) is not
    renewed for ever, it runs out within one TTL.
    """

    def __init__(self, lease: Lease, client, name: str, script, ttl_s: float, interval: float):
        super().__init__(name=f"lock-renewal:{name}", daemon=True)
        self.client, self.lock_name, self.script = client, name, script
        self.token, self.lost = lease.token, lease.lost   # not the lease: it must be collectable
        self.ttl_s, self.interval = ttl_s, interval
        self.stopped = threading.Event()
        self._lease = weakref.ref(lease)
        weakref.finalize(lease, self.stopped.set)   # wake up and stop as soon as it is forgotten

    def run(self) -> None:
        wait = self.interval
        while not self.stopped.wait(wait):
            if self._lease() is None or self.lost.is_set():
                return
            sent_at = time.monotonic()  # before sending: the new TTL starts no earlier
            try:
                renewed = self.script(keys=[self.lock_name],
                                      args=[self.token, int(self.ttl_s * 1000)],
                                      client=self.client)
            except redis.RedisError as error:  # unreachable: the deadline in `lost` decides
                logger.warning("renewing lock %r failed: %s", self.lock_name, error)
                wait = self.interval / 3  # try again sooner: the lease runs on meanwhile
                continue
            if self.stopped.is_set():
                return  # released meanwhile: a refusal now is not a loss
            if not renewed:
                logger.warning("lock %r lost: its lease could not be renewed", self.lock_name)
                self.lost.set()
                return
            self.lost.renewed_until(lease_end(sent_at, self.ttl_s))
            wait = self.interval

    def stop(self) -> None:
        self.stopped.set()
        if self is not threading.current_thread():
            self.join(timeout=self.ttl_s)  # a renewal request in flight ends, or its lease does
