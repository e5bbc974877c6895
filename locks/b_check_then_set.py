"""Step b — check, then set: two processes hold the "lock" at once.

    if GET lock is nil:        # A sees no holder … and so does B, before A's SET lands
        SET lock me            # both set, both go on as the holder

The check and the set are two commands; any number of processes can pass the check before the first
set. The story `show_b()` in `scenes/lesson_03_steps.py` forces that with a barrier between check
and set: both hold, every time. The fix is to make check-and-set one command: SET NX (step c).
"""
from __future__ import annotations

import time
import uuid


class CheckThenSetLock:
    def __init__(self, client, name, between_check_and_set=None):
        self.client, self.name = client, name
        self.between_check_and_set = between_check_and_set or (lambda: None)
        self.token = uuid.uuid4().hex

    def acquire(self, blocking_timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + blocking_timeout
        while self.client.get(self.name) is not None:    # check …
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        self.between_check_and_set()
        self.client.set(self.name, self.token)           # … then set: someone may have, meanwhile
        return True

    def release(self) -> bool:
        return bool(self.client.delete(self.name))
