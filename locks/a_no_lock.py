"""Step a — no lock: read-modify-write from several processes loses updates.

    value = GET counter        # process 1 reads 41, and so does process 2
    SET counter value + 1      # both write 42: one increment is lost

The story `show_a()` in `scenes/lesson_03_steps.py` runs 8 processes × 500 increments. A barrier
between the read and the write makes all eight read before any of them writes, every round, so the
loss is certain, not luck: the counter ends at 500, not 4000. (Without the barrier the loss still
happens, only by how much varies.) With a lock around the three steps the counter is exact, even
with a sleep widening the window.

Redis has INCR for this one case; the lock is for read-modify-write that no single command does.
"""
from __future__ import annotations

KEY = "lesson03:a:counter"


def increment(client, key: str, between_read_and_write=None) -> None:
    """GET, add one, SET: three steps, and another process can run between any two of them."""
    value = int(client.get(key) or 0)
    if between_read_and_write:
        between_read_and_write()  # the forced interleaving: a barrier, in show_a()
    client.set(key, value + 1)
