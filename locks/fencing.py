"""Fencing tokens on the resource's side: a write is taken only with a fence at least the highest
the resource has seen. `locks.Lock.fenced_write` calls `fenced_write` with its holder's fence.

Key names, two namespaces that never meet:

    <lock name>:fence              the lock's counter: the last fence it issued      (fence_key)
    <resource key>:highest-fence   the highest fence the resource has accepted       (highest_fence_key)

What fencing needs (see `locks.lock`'s docstring): the counter and the highest fence must never
go back, so the Redis that keeps them must not lose them; and fencing guards one resource key
at a time.
"""
from __future__ import annotations

import redis
from redis.exceptions import LockError


class LockLostError(LockError):
    """The lock's lease ended while its holder still ran (a renewal failed): stop writing."""


class StaleFenceError(LockError):
    """The resource has seen a newer fencing token: this holder's write was refused."""


# KEYS[1] resource key, KEYS[2] the highest fence the resource has seen
# ARGV[1] value, ARGV[2] the writer's fencing token
# returns 1 when written, 0 when a newer fence was seen before (nothing is written)
FENCED_WRITE_SCRIPT = """
    local highest = tonumber(redis.call('get', KEYS[2]) or '0')
    if tonumber(ARGV[2]) < highest then
        return 0
    end
    redis.call('set', KEYS[2], ARGV[2])
    redis.call('set', KEYS[1], ARGV[1])
    return 1
"""


def fence_key(name: str) -> str:
    """Where lock `name` counts the fencing tokens it issues."""
    return f"{name}:fence"


def highest_fence_key(key: str) -> str:
    """Where resource `key` keeps the highest fence it has accepted.

    Not `fence_key(key)`: a resource may share its name with a lock (a lock "report" guarding
    the key "report"), and a write must never touch a lock's counter (issue #16, defect 6).
    """
    return f"{key}:highest-fence"


_fenced_write_script = None  # a redis-py Script, made on first use; it runs on any client


def fenced_write(client: redis.Redis, key: str, value, fence: int) -> bool:
    """Set `key` to `value` if `fence` ≥ every fence `key` has accepted; True when written.

    Fences are counted per lock name: guard each resource with one lock name, always the same.
    """
    global _fenced_write_script
    if _fenced_write_script is None:
        _fenced_write_script = client.register_script(FENCED_WRITE_SCRIPT)
    # EVALSHA with this client; redis-py loads the script if the server does not know it yet
    return bool(_fenced_write_script(keys=[key, highest_fence_key(key)], args=[value, fence],
                                     client=client))
