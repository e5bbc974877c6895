"""Lesson 03's steps a → f, each lock's flaw played by real processes with a forced interleaving.

Usage (notebooks 03a and 03b, and tests/test_03_locks_steps.py call these)::

    >>> show_a(url)                       # 8 processes × 500 increments, no lock: 500, not 4000
    >>> show_a_fixed(url, Lock)           # the same inside locks.Lock: 4000
    >>> most_holders_at_once(show_b(url)) # check-then-set: 2 processes hold it at once
    >>> show_c(url).ttl_left_after_crash  # SETNX, holder SIGKILLed: -1, the lock never expires
    >>> show_d(url), show_e(url), show_f(url)   # a holder SIGSTOPped past its lease: PauseStory

Each `locks/<step>.py` module is a lock and nothing else, so it can be read and copied alone;
the stories below put it in the situation where its flaw shows, every time, and return what
happened: the processes' own notes (who held the lock when, which writes landed) read back from
Redis, plus the final state of the resource.

    count_up(url, key, increment, processes=8, times=500, lock_class=None) → the counter's value
    two_contenders(url, lock_class)            → events; both think they hold it with a naive lock
    crashed_holder(url, lock_class, ttl)       → can anyone acquire after the holder is SIGKILLed?
    paused_holder(url, lock_class, ttl, write) → A is SIGSTOPped past its lease, B takes over …

A lock here is any class `Lock(client, name, timeout=None)` with `acquire(blocking_timeout=…)`
and `release()`; `locks.Lock` fits, and so do the teaching locks. Processes note events in a Redis
list (`<prefix>:events`), so the timeline is what the processes themselves saw.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import redis

from labkit.children import Children
from locks import a_no_lock, b_check_then_set, c_setnx_forever, d_expiry_plain_del, e_token_release
from locks.lock import Lock

WAIT = 30.0  # every forced wait has a limit: a broken story fails instead of hanging
# How often a process waiting for the counter's lock asks again. The holder asks again at once
# after each release and mostly keeps the lock, so seven waiters asking every 2 ms (3500 round
# trips a second) only took CPU from it: 8 × 500 locked increments used twice the CPU.
COUNTER_LOCK_POLL = 0.05


# --- notes the processes take ----------------------------------------------------------------

def note(client: redis.Redis, prefix: str, who: str, what: str, **details) -> None:
    client.rpush(f"{prefix}:events", json.dumps({"who": who, "what": what, "t": time.time(),
                                                 **details}))


def read_notes(client: redis.Redis, prefix: str) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(f"{prefix}:events", 0, -1)]


def most_holders_at_once(events: list[dict]) -> int:
    """The largest number of processes that believed, at one moment, that they held the lock."""
    holding, most = set(), 0
    for event in sorted(events, key=lambda e: e["t"]):
        if event["what"] == "acquired":
            holding.add(event["who"])
        elif event["what"] == "released":
            holding.discard(event["who"])
        most = max(most, len(holding))
    return most


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def _clear(url: str, prefix: str) -> redis.Redis:
    """A story starts from scratch, fence counters included (never delete a real lock's counter:
    its holders' fences would start again below what the resource has seen)."""
    client = _client(url)
    keys = [prefix, *client.scan_iter(f"{prefix}:*")]
    if keys:
        client.delete(*keys)
    return client


def _release(lock) -> str:
    """Release and say what happened: teaching locks return a bool, redis-py's raise."""
    try:
        result = lock.release()
    except redis.exceptions.LockError as error:
        return f"refused: {type(error).__name__}"
    return "refused: not the owner" if result is False else "ok"


# --- a: read-modify-write from several processes ---------------------------------------------

def _count_up(url, key, times, increment, lock_class, barrier, window) -> None:
    client = _client(url)
    pause = barrier.wait if barrier else (lambda: time.sleep(window)) if window else None
    for _ in range(times):
        if lock_class is None:
            increment(client, key, pause)
            continue
        lock = lock_class(client, f"{key}:lock", timeout=10, sleep=COUNTER_LOCK_POLL)
        if not lock.acquire(blocking_timeout=WAIT):
            raise TimeoutError(f"no lock on {key} within {WAIT} s")
        try:
            increment(client, key, pause)
        finally:
            lock.release()


def count_up(url: str, key: str, increment, processes: int = 8, times: int = 500,
             lock_class=None, forced: bool = True, window: float = 0.0,
             timeout: float = 150) -> int:
    """`processes` processes each run `increment(client, key, between_read_and_write)` `times`
    times; returns the final value of `key`.

    Without a lock and `forced`, all processes read before any writes, every round (a barrier
    between read and write): each round adds 1 instead of `processes`. With a lock, `window`
    seconds of sleep between read and write make the race window wide — and it does not matter.
    """
    client = _clear(url, key)
    with Children() as children:
        racy = forced and lock_class is None
        barrier = children.context.Barrier(processes, timeout=WAIT) if racy else None
        for number in range(processes):
            children.start(_count_up, url, key, times, increment, lock_class, barrier, window,
                           name=f"counter{number + 1}")
        children.join(timeout)
    return int(client.get(key) or 0)


# --- b: two processes ask at the same moment -------------------------------------------------

def _contender(url, prefix, who, lock_class, between_check_and_set, hold) -> None:
    client = _client(url)
    lock = lock_class(client, f"{prefix}:lock", between_check_and_set=between_check_and_set)
    if lock.acquire(blocking_timeout=WAIT):
        note(client, prefix, who, "acquired")
        time.sleep(hold)
        note(client, prefix, who, "released", result=_release(lock))


def two_contenders(url: str, lock_class, prefix: str = "lesson03:b", hold: float = 0.3):
    """Two processes acquire at once; both pass the check before either sets (a barrier)."""
    client = _clear(url, prefix)
    with Children() as children:
        both_checked = children.context.Barrier(2, timeout=WAIT)
        for who in ("A", "B"):
            children.start(_contender, url, prefix, who, lock_class, both_checked.wait, hold,
                           name=who)
        children.join(WAIT)
    return read_notes(client, prefix)


# --- c: the holder crashes -------------------------------------------------------------------

def _hold_for_ever(url, prefix, lock_class, ttl, acquired) -> None:
    client = _client(url)
    lock = lock_class(client, f"{prefix}:lock", timeout=ttl)
    lock.acquire(blocking_timeout=WAIT)
    note(client, prefix, "A", "acquired", fence=getattr(lock, "fence", None),
         ttl=ttl and ttl * 1000)
    acquired.set()
    time.sleep(3600)  # "working": it will be SIGKILLed, and release() never runs


def _try_to_acquire(url, prefix, who, lock_class, ttl, wait) -> None:
    client = _client(url)
    lock = lock_class(client, f"{prefix}:lock", timeout=ttl)
    note(client, prefix, who, "asks")
    if lock.acquire(blocking_timeout=wait):
        note(client, prefix, who, "acquired", fence=getattr(lock, "fence", None))
        note(client, prefix, who, "released", result=_release(lock))
    else:
        note(client, prefix, who, "gave up", waited=wait)


@dataclass
class CrashStory:
    events: list[dict]
    ttl_left_after_crash: int  # PTTL of the lock right after the kill: -1 means never expires
    acquired_after_crash: list[str] = field(default_factory=list)


def crashed_holder(url: str, lock_class, ttl: float | None, wait: float = 3.0,
                   others: int = 1, prefix: str = "lesson03:c") -> CrashStory:
    """A takes the lock and is SIGKILLed; `others` processes then each try for `wait` seconds."""
    client = _clear(url, prefix)
    with Children() as children:
        acquired = children.context.Event()
        holder = children.start(_hold_for_ever, url, prefix, lock_class, ttl, acquired, name="A")
        if not acquired.wait(WAIT):
            raise TimeoutError("the holder did not acquire the lock")
        children.kill(holder)
        note(client, prefix, "A", "killed")
        ttl_left = client.pttl(f"{prefix}:lock")
        for number in range(others):
            children.start(_try_to_acquire, url, prefix, chr(ord("B") + number), lock_class, ttl,
                           wait, name=chr(ord("B") + number))
        children.join(WAIT + wait, expect_killed=[holder])
    events = read_notes(client, prefix)
    after = [e["who"] for e in events if e["what"] == "acquired" and e["who"] != "A"]
    return CrashStory(events, ttl_left, after)


# --- d, e, f: the holder is paused past its lease --------------------------------------------

def plain_write(client: redis.Redis, lock, key: str, value: str) -> None:
    client.set(key, value)


def write_through_fence(client: redis.Redis, lock, key: str, value: str) -> None:
    lock.fenced_write(key, value)  # locks.Lock: refused with a LockError if a newer holder wrote


def _write(client, prefix, who, lock, write, value) -> None:
    try:
        write(client, lock, f"{prefix}:resource", value)
    except redis.exceptions.LockError as error:
        note(client, prefix, who, "write refused", error=type(error).__name__)
    else:
        note(client, prefix, who, "wrote", value=value)


def _paused_holder(url, prefix, lock_class, ttl, options, write, acquired, writes) -> None:
    client = _client(url)
    lock = lock_class(client, f"{prefix}:lock", timeout=ttl, **options)
    lock.acquire(blocking_timeout=WAIT)
    note(client, prefix, "A", "acquired", fence=getattr(lock, "fence", None), ttl=ttl * 1000)
    acquired.set()
    # Meanwhile the parent SIGSTOPs this process (a GC pause, a frozen VM). The go signal is a
    # Redis list, not a multiprocessing.Event: Event.set() waits for a stopped waiter to wake.
    client.blpop([f"{prefix}:go"], timeout=WAIT)
    for number in range(writes):
        _write(client, prefix, "A", lock, write, f"A's report #{number + 1}")
    note(client, prefix, "A", "released", result=_release(lock))


def _next_holder(url, prefix, lock_class, ttl, write, wrote, may_release) -> None:
    client = _client(url)
    lock = lock_class(client, f"{prefix}:lock", timeout=WAIT)  # B is not paused: a long lease
    note(client, prefix, "B", "asks")
    if not lock.acquire(blocking_timeout=WAIT):
        raise TimeoutError("B never got the lock")
    note(client, prefix, "B", "acquired", fence=getattr(lock, "fence", None))
    _write(client, prefix, "B", lock, write, "B's report")
    wrote.set()
    may_release.wait(WAIT)
    note(client, prefix, "B", "released", result=_release(lock))


def _newcomer(url, prefix, lock_class, ttl) -> None:
    client = _client(url)
    lock = lock_class(client, f"{prefix}:lock", timeout=ttl)
    if lock.acquire(blocking_timeout=0.2):
        note(client, prefix, "C", "acquired", fence=getattr(lock, "fence", None))
        time.sleep(0.1)
        note(client, prefix, "C", "released", result=_release(lock))
    else:
        note(client, prefix, "C", "refused", detail="B holds the lock")


@dataclass
class PauseStory:
    events: list[dict]
    resource: str | None  # the resource's final value

    def what(self, who: str, what: str) -> list[dict]:
        return [e for e in self.events if e["who"] == who and e["what"] == what]


def paused_holder(url: str, lock_class, ttl: float = 0.5, write=plain_write, writes: int = 1,
                  holder_options: dict | None = None,
                  prefix: str = "lesson03:pause") -> PauseStory:
    """A holds the lock and is SIGSTOPped past its lease; B takes the lock and writes; A is
    resumed, writes `writes` times and releases while B still holds; then C tries to acquire.

    `holder_options` go to A's lock, e.g. {"auto_renewal": True}: a stopped process renews nothing.
    """
    client = _clear(url, prefix)
    with Children() as children:
        make = children.context.Event
        acquired, b_wrote, b_may_release = make(), make(), make()
        a = children.start(_paused_holder, url, prefix, lock_class, ttl, holder_options or {},
                           write, acquired, writes, name="A")
        if not acquired.wait(WAIT):
            raise TimeoutError("A did not acquire the lock")
        children.stop(a)
        note(client, prefix, "A", "paused")
        client.rpush(f"{prefix}:go", "go")  # A runs on as soon as it is resumed
        children.start(_next_holder, url, prefix, lock_class, ttl, write, b_wrote, b_may_release,
                       name="B")
        if not b_wrote.wait(WAIT):
            raise TimeoutError("B did not write")
        note(client, prefix, "A", "resumed")
        children.resume(a)
        a.join(WAIT)
        c = children.start(_newcomer, url, prefix, lock_class, ttl, name="C")
        c.join(WAIT)
        b_may_release.set()
        children.join(WAIT)
    return PauseStory(read_notes(client, prefix), client.get(f"{prefix}:resource"))


# --- The steps' stories -------------------------------------------------------------------------

def show_a(url: str, processes: int = 8, times: int = 500) -> int:
    """Step a: the counter after `processes` × `times` forced-racy increments without a lock."""
    return count_up(url, a_no_lock.KEY, a_no_lock.increment, processes, times, lock_class=None,
                    forced=True)


def show_a_fixed(url: str, lock_class, processes: int = 8, times: int = 500,
                 window: float = 0.0) -> int:
    """Step a's increments, each inside `lock_class` (e.g. locks.Lock): the counter is exact."""
    return count_up(url, a_no_lock.KEY, a_no_lock.increment, processes, times,
                    lock_class=lock_class, window=window)


def show_b(url: str) -> list[dict]:
    """Step b: notes of two processes asking at the same moment; both "acquired" at once."""
    return two_contenders(url, b_check_then_set.CheckThenSetLock)


def show_c(url: str, wait: float = 3.0) -> CrashStory:
    """Step c: the holder is SIGKILLed; another process tries for `wait` s and gives up."""
    return crashed_holder(url, c_setnx_forever.SetnxLock, ttl=None, wait=wait)


def show_d(url: str, ttl: float = 0.5) -> PauseStory:
    """Step d: A paused past its lease, then DEL: B and C hold the lock at once."""
    return paused_holder(url, d_expiry_plain_del.ExpiringLock, ttl, prefix="lesson03:d")


def show_d_crash(url: str, ttl: float = 0.5) -> CrashStory:
    """Step c's crash with step d's lease: the next process gets the lock once the TTL ran out."""
    return crashed_holder(url, d_expiry_plain_del.ExpiringLock, ttl=ttl, wait=5 * ttl,
                          prefix="lesson03:d-crash")


def show_e(url: str, ttl: float = 0.5) -> PauseStory:
    """Step e: A paused past its lease; its release is refused, but its stale write lands."""
    return paused_holder(url, e_token_release.TokenLock, ttl, prefix="lesson03:e")


def show_f(url: str, ttl: float = 0.5, writes: int = 1) -> PauseStory:
    """Step f: A (locks.Lock, auto-renewing) paused past its lease, then resumed: every one of
    its `writes` is refused by the resource. A stopped process renews nothing."""
    return paused_holder(url, Lock, ttl, write=write_through_fence, writes=writes,
                         holder_options={"auto_renewal": True}, prefix="lesson03:f")
