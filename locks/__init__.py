"""Redis distributed locks, from a race to a fenced, self-renewing lock (lesson 03).

Usage::

    from locks import Lock
    with redis_client.lock("nightly-report", timeout=30, lock_class=Lock) as lock:
        lock.fenced_write("report:latest", build_report())

`Lock` (in `locks.lock`) is the one to use. The other modules are the way there, one step each,
every one with the flaw that the next step fixes (lesson 03's scenes make each flaw happen in
real processes: `scenes/lesson_03_steps.py`). This package imports nothing else of the
repository: copy it out whole.

    a_no_lock            read-modify-write from several processes loses updates
    b_check_then_set     GET, then SET: two processes hold the "lock" at once
    c_setnx_forever      SETNX with no expiry: a crashed holder blocks everyone for ever
    d_expiry_plain_del   SET NX PX, DEL to release: a slow holder deletes someone else's lock
    e_token_release      a random token, compare-and-delete in Lua: correct — yet a holder
                         paused past its lease still writes after the next one did
    f_fencing            fencing tokens: the paused holder's write is refused by the resource
"""
from redis.exceptions import LockError, LockNotOwnedError

from locks.lock import (
    FENCED_WRITE_SCRIPT,
    Lock,
    LockLostError,
    StaleFenceError,
    fence_key,
    fenced_write,
    highest_fence_key,
)

__all__ = [
    "FENCED_WRITE_SCRIPT",
    "Lock",
    "LockError",
    "LockLostError",
    "LockNotOwnedError",
    "StaleFenceError",
    "fence_key",
    "fenced_write",
    "highest_fence_key",
]
