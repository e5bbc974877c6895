"""Step d — SET NX PX with a plain DEL release: a slow holder deletes someone else's lock.

    SET lock me NX PX 500      # a lease: a crashed holder frees the lock after 500 ms (fixes c)
    ... work takes 800 ms ...  # the lease ran out at 500 ms, and B took the lock
    DEL lock                   # A deletes B's lock: now C gets it while B still holds it

The story `show_d()` in `scenes/lesson_03_steps.py` SIGSTOPs A while it holds the lock, long enough
for its lease to expire and B to take over; A is resumed and releases with DEL; C then acquires at
once — B and C both hold. The fix: store a random token and delete only if the key still holds it,
atomically (step e).
"""
from __future__ import annotations

import time
import uuid


class ExpiringLock:
    def __init__(self, client, name, timeout=10.0):
        self.client, self.name, self.ttl_ms = client, name, int(timeout * 1000)
        self.token = uuid.uuid4().hex

    def acquire(self, blocking_timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + blocking_timeout
        while not self.client.set(self.name, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def release(self) -> bool:
        return bool(self.client.delete(self.name))  # whoever's lock it is by now
