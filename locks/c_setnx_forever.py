"""Step c — SETNX with no expiry: a crashed holder blocks everyone for ever.

    SETNX lock me              # atomic: exactly one process gets it (fixes step b)
    ... work ...
    DEL lock                   # never runs if the holder is killed (OOM, SIGKILL, power cut)

The story `show_c()` in `scenes/lesson_03_steps.py` SIGKILLs the holder while it holds the lock:
the key has no TTL (PTTL -1), and the next process waits in vain. The fix is a lease: SET NX PX
ttl, so Redis drops the key after ttl (step d).
"""
from __future__ import annotations

import time
import uuid


class SetnxLock:
    def __init__(self, client, name, timeout=None):  # timeout: accepted, and that is the flaw
        self.client, self.name = client, name
        self.token = uuid.uuid4().hex

    def acquire(self, blocking_timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + blocking_timeout
        while not self.client.setnx(self.name, self.token):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def release(self) -> bool:
        return bool(self.client.delete(self.name))
