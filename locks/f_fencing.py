"""Step f — fencing tokens: the resource refuses a write from a holder whose lease has ended.

    EVAL acquire: SET lock token NX PX 500, then INCR lock:fence   → fence 7, in one round trip
    EVAL write:   if 7 >= highest fence this resource has seen: write, remember 7; else refuse

A holder paused past its lease comes back with fence 7 after B (fence 8) has written: the resource
has seen 8, so A's write is refused (`StaleFenceError`) — zero stale writes, however long the
pause. `locks.Lock` does this; `show_f()` in `scenes/lesson_03_steps.py` runs the story of e with
it, A with auto-renewal on, to show that a SIGSTOPped process renews nothing: only the resource's
check saves the day.

Fencing needs the resource to cooperate: it must store the highest fence it has seen and check
it atomically with the write (a Lua script here; `UPDATE … WHERE fence <= :fence` in SQL).
A resource that cannot check (an email, an HTTP call) cannot be fenced.
"""
from __future__ import annotations

from locks.lock import Lock

__all__ = ["Lock"]   # step f's lock is the one to use: locks.Lock
