"""Step e — a random token and a compare-and-delete release in Lua: the correct lease lock.

    SET lock <random token> NX PX 500
    EVAL "if GET lock == token then DEL lock end"    # one atomic step on the server

A release by a holder whose lease expired now deletes nothing (fixes d): C cannot take B's lock.
This is redis-py's `Lock`, and the single-instance algorithm of the Redis docs.

What no lock can fix: the story `show_e()` in `scenes/lesson_03_steps.py` pauses A past its lease
exactly as in d. A's release is refused, but A does not know that while it works — it writes its
stale report after B wrote its own, and the resource keeps A's. A lease bounds how long a lock is
held, not how long its holder runs. Step f makes the resource tell old holders from new ones.
"""
from __future__ import annotations

from locks.d_expiry_plain_del import ExpiringLock


class TokenLock(ExpiringLock):
    """Step d's lock (random token, SET NX PX), with a release that deletes only its own lock."""

    # KEYS[1] lock name
    # ARGV[1] this holder's token
    # returns 1 when the lock was ours and is deleted, 0 when it is not ours (any more)
    RELEASE = """
        if redis.call('get', KEYS[1]) == ARGV[1] then
            return redis.call('del', KEYS[1])
        end
        return 0
    """

    def __init__(self, client, name, timeout=10.0):
        super().__init__(client, name, timeout)
        self.release_script = client.register_script(self.RELEASE)

    def release(self) -> bool:
        return bool(self.release_script(keys=[self.name], args=[self.token]))
