"""`Lock`: redis-py's lock, plus a fencing token, optional auto-renewal and fenced writes.

Usage::

    import redis
    from locks import Lock, StaleFenceError

    client = redis.Redis.from_url("redis://localhost:6379/0")
    with client.lock("report", timeout=10, lock_class=Lock) as lock:   # drop-in: redis.lock.Lock
        lock.fence                                  # 17: this holder's fencing token
        lock.fenced_write("report:latest", "...")   # refused if a newer holder has written

    lock = Lock(client, "report", timeout=10, auto_renewal=True)   # a watchdog extends the lease
    with lock:
        for chunk in work:
            ...                                     # may take longer than 10 s
            if lock.lost.is_set():                  # an extension failed: stop before doing harm
                break

What it adds to `redis.lock.Lock`, which does the rest (thread-local tokens, `extend`,
`reacquire`, `owned`, the exceptions; `acquire` keeps its waiting loop, written out for speed):

- **A fencing token.** Each acquire also increments `<name>:fence` in the same Lua script, so
  holders get strictly increasing integers (one round trip, as plain redis-py). The token is at
  `<name>` exactly as in redis-py; in Redis Cluster give the name a hash tag, e.g. `{report}`.
- **A release without Lua where the server can.** Redis 8.4 and later, and Valkey 9.2 and
  later, delete a key only if it holds a given value, natively: `DELEX name IFEQ token`, one plain
  command. Where DELEX is refused, nothing was deleted, and the release runs redis-py's
  compare-and-delete script instead, as redis-py does. Where it is unavailable (older servers,
  Valkey 9.1 and before included, answer "unknown command"; an ACL may deny it), the lock, and
  locks made later on the same connection pool, go straight to the script from then on.
- **Auto-renewal** (`auto_renewal=True`, needs a `timeout`): a daemon thread resets the TTL every
  `renewal_interval` seconds (a third of the timeout by default). If an extension is refused, or
  none has succeeded for a whole timeout, `lock.lost` (a `threading.Event`) is set.
- **Fenced writes.** `lock.fenced_write(key, value)` sets `key` only if this holder's fence is
  at least the highest fence that key has seen (kept in `<key>:fence`). A holder that was paused
  past its lease (GC, SIGSTOP, a VM migration) comes back with an old fence and is refused with
  `StaleFenceError` instead of overwriting a newer holder's work; once `lost` is set it gets
  `LockLostError` without even trying.

A lease is not mutual exclusion: renewal runs in the paused process too, so only the resource
can tell an old holder from a new one. Fencing needs the resource's cooperation: here the resource
is a Redis key written through a Lua script; a database would check the fence in its UPDATE.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Optional

import redis
import redis.lock
from redis.exceptions import LockError, LockNotOwnedError, NoPermissionError, NoScriptError
from redis.typing import Number

logger = logging.getLogger(__name__)


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


def fence_key(key: str) -> str:
    """Where lock `key` counts its fencing tokens, or resource `key` keeps the highest it saw."""
    return f"{key}:fence"


# Connection pools where DELEX is unavailable (unknown before Redis 8.4 and Valkey 9.2, or denied
# by an ACL): their locks release with the Lua script, without asking again.
_pools_without_delex = weakref.WeakSet()


def _pool_of(client):
    return getattr(client, "connection_pool", client)  # RedisCluster has none: the client itself


def _says_delex_is_unavailable(error: redis.RedisError) -> bool:
    """Unknown before Redis 8.4 and Valkey 9.2, denied by an ACL, or unknown to redis-py's
    cluster client (which checks commands before sending them)."""
    message = str(error).lower()
    return (isinstance(error, NoPermissionError) or "unknown command" in message
            or "command doesn't exist" in message)

_fenced_write_script = None  # a redis-py Script, made on first use; it runs on any client


def fenced_write(client: redis.Redis, key: str, value, fence: int) -> bool:
    """Set `key` to `value` if `fence` ≥ every fence `key` has accepted; True when written.

    Fences are counted per lock name: guard each resource with one lock name, always the same.
    """
    global _fenced_write_script
    if _fenced_write_script is None:
        _fenced_write_script = client.register_script(FENCED_WRITE_SCRIPT)
    # EVALSHA with this client; redis-py loads the script if the server does not know it yet
    return bool(_fenced_write_script(keys=[key, fence_key(key)], args=[value, fence],
                                     client=client))


class Lock(redis.lock.Lock):
    """A drop-in `redis.lock.Lock` with a fencing token, auto-renewal and fenced writes."""

    lua_acquire = None

    # KEYS[1] lock name, KEYS[2] fence counter
    # ARGV[1] token, ARGV[2] ttl in ms ("0": no expiry)
    # returns the new fencing token, or 0 when the lock is held by someone else
    LUA_ACQUIRE_SCRIPT = """
        local ok
        if tonumber(ARGV[2]) > 0 then
            ok = redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
        else
            ok = redis.call('set', KEYS[1], ARGV[1], 'NX')
        end
        if not ok then
            return 0
        end
        return redis.call('incr', KEYS[2])
    """

    def __init__(
        self,
        redis,
        name: str,
        timeout: Optional[Number] = None,
        sleep: Number = 0.1,
        blocking: bool = True,
        blocking_timeout: Optional[Number] = None,
        thread_local: bool = True,
        raise_on_release_error: bool = True,
        *,
        auto_renewal: bool = False,
        renewal_interval: Optional[Number] = None,
    ):
        """The arguments of `redis.lock.Lock`, plus:

        ``auto_renewal``: while held, a daemon thread resets the TTL to ``timeout`` every
        ``renewal_interval`` seconds (default ``timeout / 3``); when that fails, ``lost`` is set.
        Through ``redis_client.lock(...)``, pass ``lock_class=functools.partial(Lock,
        auto_renewal=True)``.
        """
        if auto_renewal and not timeout:
            raise LockError("auto_renewal needs a timeout: a lock without one never expires",
                            lock_name=name)
        if auto_renewal and renewal_interval and renewal_interval >= timeout:
            raise LockError(f"renewal_interval ({renewal_interval} s) must be shorter than the "
                            f"timeout ({timeout} s), or the lease ends before it is renewed",
                            lock_name=name)
        super().__init__(redis, name, timeout=timeout, sleep=sleep, blocking=blocking,
                         blocking_timeout=blocking_timeout, thread_local=thread_local,
                         raise_on_release_error=raise_on_release_error)
        self.auto_renewal = auto_renewal
        self.renewal_interval = renewal_interval or (timeout / 3 if timeout else None)
        self.local.fence = None
        self.fence_counter_key = fence_key(name)  # counted per lock name, next to it
        self.lost = threading.Event()
        self._watchdog: Optional[_Watchdog] = None
        # try DELEX first unless this client's server already said it has none
        self._release_with_delex = _pool_of(redis) not in _pools_without_delex

    def register_scripts(self) -> None:
        super().register_scripts()
        cls = self.__class__
        if cls.lua_acquire is None:
            cls.lua_acquire = self.redis.register_script(cls.LUA_ACQUIRE_SCRIPT)

    @property
    def fence(self) -> Optional[int]:
        """This holder's fencing token, or None when it does not hold the lock."""
        if getattr(self.local, "token", None) is None:
            return None
        return getattr(self.local, "fence", None)

    def acquire(self, sleep=None, blocking=None, blocking_timeout=None, token=None) -> bool:
        if token is None:
            # 128 random bits: unguessable, unlike redis-py's uuid1 (clock + MAC address), and
            # ten times cheaper to make (about 1 µs against 10 µs per acquire).
            token = os.urandom(16).hex().encode()
        else:
            token = self.redis.get_encoder().encode(token)  # as redis-py: owned() compares bytes
        # redis-py's acquire loop, written out here rather than called: most acquires find the
        # lock free at once, and our acquire wrapped around redis-py's cost about 4 % more per
        # acquire + release cycle (bench/locks.py).
        if sleep is None:
            sleep = self.sleep
        if blocking is None:
            blocking = self.blocking
        if blocking_timeout is None:
            blocking_timeout = self.blocking_timeout
        stop_trying_at = None
        if blocking_timeout is not None:
            stop_trying_at = time.monotonic() + blocking_timeout
        while not self.do_acquire(token):
            if not blocking:
                return False
            next_try_at = time.monotonic() + sleep
            if stop_trying_at is not None and next_try_at > stop_trying_at:
                return False
            time.sleep(sleep)
        self.local.token = token
        if self.lost.is_set():
            self.lost.clear()
        if self.auto_renewal:
            self._start_watchdog(token)
        return True

    def do_acquire(self, token) -> bool:
        ttl_ms = int(self.timeout * 1000) if self.timeout else 0
        fence = self._run(self.lua_acquire, 2, self.name, self.fence_counter_key, token, ttl_ms)
        if not fence:
            return False
        self.local.fence = int(fence)
        return True

    def do_release(self, expected_token) -> None:
        if not self._delete_if_token_is(expected_token):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned",
                                    lock_name=self.name)

    def _delete_if_token_is(self, token) -> int:
        """Delete the lock only if it still holds `token` (1 when deleted): atomic, one round trip.

        Redis ≥ 8.4 does it natively with DELEX, a plain command that costs the server about a
        fifth of what the script does (1.2 µs against 6 µs); older servers run the script.
        """
        if self._release_with_delex:
            try:
                # execute_command, not redis-py's delex(): that one warns "experimental" per call
                return self.redis.execute_command("DELEX", self.name, "IFEQ", token)
            except (redis.ConnectionError, redis.TimeoutError):
                raise  # DELEX may have run: the caller must not be told anything else
            except redis.RedisError as error:
                # refused, so nothing was deleted: the script below answers (or raises) instead
                if _says_delex_is_unavailable(error):  # and will be, for this pool's locks
                    self._release_with_delex = False
                    _pools_without_delex.add(_pool_of(self.redis))
        return self._run(self.lua_release, 1, self.name, token)

    def _run(self, script, numkeys: int, *keys_and_args):
        """EVALSHA the script (arguments as for `evalsha`), loading it first if the server does
        not know it.

        The same as calling the `Script` object, minus its per-call Python (about 6 µs, a few
        percent of an acquire + release cycle on loopback; see bench/locks.py).
        """
        try:
            return self.redis.evalsha(script.sha, numkeys, *keys_and_args)
        except NoScriptError:  # a new or restarted server, or a SCRIPT FLUSH: load it, run again
            self.redis.script_load(script.script)
            return self.redis.evalsha(script.sha, numkeys, *keys_and_args)

    def release(self) -> None:
        if self._watchdog is not None:
            self._stop_watchdog()
        try:
            super().release()
        finally:
            self.local.fence = None

    def fenced_write(self, key: str, value) -> None:
        """Set `key` to `value` unless a newer holder has written it (see the module docstring).

        Raises LockLostError once a renewal failed, StaleFenceError when the resource has seen a
        newer fence, LockError when this lock is not held.
        """
        if self.lost.is_set():
            raise LockLostError(f"lock {self.name!r} was lost (its renewal failed): "
                                f"not writing {key!r}", lock_name=self.name)
        fence = self.fence
        if fence is None:
            raise LockError(f"cannot write {key!r} through lock {self.name!r}: it is not held",
                            lock_name=self.name)
        if not fenced_write(self.redis, key, value, fence):
            raise StaleFenceError(f"write to {key!r} refused: fence {fence} of lock {self.name!r} "
                                  "is older than one the resource has seen", lock_name=self.name)

    def _start_watchdog(self, token) -> None:
        self._stop_watchdog()
        self._watchdog = _Watchdog(self, token)
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stop()


class _Watchdog(threading.Thread):
    """Resets the lease of one holder (one token) until stopped, or until it cannot."""

    def __init__(self, lock: Lock, token):
        super().__init__(name=f"lock-renewal:{lock.name}", daemon=True)
        self.lock = lock
        self.token = token  # captured here: with thread_local tokens, this thread sees none
        self.ttl_ms = int(lock.timeout * 1000)
        self.stopped = threading.Event()

    def run(self) -> None:
        confirmed_at = time.monotonic()
        while not self.stopped.wait(self.lock.renewal_interval):
            asked_at = time.monotonic()
            try:
                renewed = self.lock.lua_reacquire(keys=[self.lock.name],
                                                  args=[self.token, self.ttl_ms],
                                                  client=self.lock.redis)
            except redis.RedisError as error:  # Redis unreachable: the lease may still run
                logger.warning("renewing lock %r failed: %s", self.lock.name, error)
                renewed = None
            if renewed:
                confirmed_at = asked_at  # the new TTL started no earlier than we asked
                continue
            if renewed is not None or time.monotonic() - confirmed_at >= self.lock.timeout:
                if not self.stopped.is_set():  # a release racing us is not a loss
                    logger.warning("lock %r lost: its lease could not be renewed", self.lock.name)
                    self.lock.lost.set()
                return

    def stop(self) -> None:
        self.stopped.set()
        if self is not threading.current_thread():
            self.join()
