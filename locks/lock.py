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
  `renewal_interval` seconds (a third of the timeout by default). `lock.lost` (a
  `threading.Event`, one per holder) is set when an extension is refused, and — read at any
  moment — once the last lease known to be set has run out, counted from before its request was
  sent: the holder knows before anyone else can take the lock, even while a renewal hangs. A
  Lock dropped without a release is renewed no more: its lease runs out.
- **Fenced writes.** `lock.fenced_write(key, value)` sets `key` only if this holder's fence is
  at least the highest fence that key has accepted (kept in `<key>:highest-fence`, apart from
  the locks' counters). A holder that was paused past its lease (GC, SIGSTOP, a VM migration)
  comes back with an old fence and is refused with `StaleFenceError` instead of overwriting a
  newer holder's work; once `lost` is set it gets `LockLostError` without even trying. A write
  to the lock's own keys (`lock.fenced_write(lock.name, …)`) is refused with a LockError.

A lease is not mutual exclusion: renewal runs in the paused process too, so only the resource
can tell an old holder from a new one. What fencing needs:

- **The resource's cooperation.** It keeps the highest fence it has accepted and checks it in
  the same atomic step as the write: a Lua script on a Redis key, as here; in SQL,
  `UPDATE … SET value = :v, fence = :f WHERE id = :id AND fence <= :f`. Every write path must go
  through that check.
- **Fences that never go back.** The counter `<name>:fence` and each resource's highest fence
  are only as durable as the Redis that keeps them. An `allkeys-*` or `volatile-*` eviction
  policy can evict them, a restart without persistence, a FLUSHDB or a failover to a lagging
  replica can lose them: the counter starts again at 1, and an old holder's fence passes the
  `>=` check again. Configure `maxmemory-policy noeviction`, persistence (`appendonly yes`,
  `appendfsync everysec` or `always`), and keep locks and fenced resources away from databases
  that get flushed; a resource in a database of its own should store its highest fence itself.
- **One resource key at a time.** The check guards the key it is written with: a holder whose
  lease has ended can still write a key the new holder has not written yet. Fence every key the
  work writes, or put the work's writes in one key (or one row).
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

from locks.fair import (ACQUIRE_OR_QUEUE, LEAVE_QUEUE, RELEASE_AND_HAND_OVER, queue_key,
                        wait_in_turn)
from locks.fencing import (FENCED_WRITE_SCRIPT, LockLostError, StaleFenceError, fence_key,
                           fenced_write, highest_fence_key)
from locks.lease import Lease, LeaseLost, Watchdog, lease_end

__all__ = ["FENCED_WRITE_SCRIPT", "Lock", "LockLostError", "StaleFenceError", "fence_key",
           "fenced_write", "highest_fence_key"]

logger = logging.getLogger(__name__)


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

class Lock(redis.lock.Lock):
    """A drop-in `redis.lock.Lock` with a fencing token, auto-renewal and fenced writes."""

    lua_acquire = None
    lua_acquire_or_queue = None
    lua_release_and_hand_over = None
    lua_leave_queue = None

    # KEYS[1] lock name, KEYS[2] fence counter
    # ARGV[1] token, ARGV[2] ttl in ms ("0": no expiry)
    # returns the new fencing token, or 0 when the lock is held by someone else; an error, with
    # nothing written, when the counter holds no integer (INCR is the first write: issue #16.2)
    LUA_ACQUIRE_SCRIPT = """
        if redis.call('exists', KEYS[1]) == 1 then
            return 0
        end
        local fence = redis.call('incr', KEYS[2])
        if ARGV[2] == '0' then
            redis.call('set', KEYS[1], ARGV[1])
        else
            redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
        end
        return fence
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
        fair: bool = False,
    ):
        """The arguments of `redis.lock.Lock`, plus:

        ``auto_renewal``: while held, a daemon thread resets the TTL to ``timeout`` every
        ``renewal_interval`` seconds (default ``timeout / 3``); ``lost`` is set when a renewal is
        refused, or when the last confirmed lease runs out. Through ``redis_client.lock(...)``,
        pass ``lock_class=functools.partial(Lock, auto_renewal=True)``.

        ``fair``: a blocked ``acquire`` queues instead of polling every ``sleep`` s, and a release
        hands the lock to the first waiter in the queue (see `locks.fair`); ``sleep`` stays the
        fallback: a waiter renews its place in the queue that often. It needs a ``timeout``.
        """
        _ttl_ms(timeout, name)  # refuse a lease Redis cannot set now, not at the first acquire
        if auto_renewal and not timeout:
            raise LockError("auto_renewal needs a timeout: a lock without one never expires",
                            lock_name=name)
        if fair and not timeout:
            raise LockError("fair=True needs a timeout: a lock handed to a waiter that died while "
                            "it queued is freed only when its lease ends", lock_name=name)
        if auto_renewal and renewal_interval and renewal_interval >= timeout:
            raise LockError(f"renewal_interval ({renewal_interval} s) must be shorter than the "
                            f"timeout ({timeout} s), or the lease ends before it is renewed",
                            lock_name=name)
        super().__init__(redis, name, timeout=timeout, sleep=sleep, blocking=blocking,
                         blocking_timeout=blocking_timeout, thread_local=thread_local,
                         raise_on_release_error=raise_on_release_error)
        if thread_local:  # every thread starts holding nothing (redis-py's raises AttributeError)
            self.local = _HolderLocal()
        self.auto_renewal = auto_renewal
        self.fair = fair
        self.renewal_interval = renewal_interval or (timeout / 3 if timeout else None)
        self.local.lease = None
        self.fence_counter_key = fence_key(name)  # counted per lock name, next to it
        # try DELEX first unless this client's server already said it has none
        self._release_with_delex = _pool_of(redis) not in _pools_without_delex

    def register_scripts(self) -> None:
        super().register_scripts()
        cls = self.__class__
        if cls.lua_acquire is None:
            cls.lua_acquire = self.redis.register_script(cls.LUA_ACQUIRE_SCRIPT)
        if cls.lua_acquire_or_queue is None:
            cls.lua_acquire_or_queue = self.redis.register_script(ACQUIRE_OR_QUEUE)
            cls.lua_release_and_hand_over = self.redis.register_script(RELEASE_AND_HAND_OVER)
            cls.lua_leave_queue = self.redis.register_script(LEAVE_QUEUE)

    @property
    def _lease(self) -> Optional[Lease]:
        """This holder's lease (this thread's, with thread_local), the last one it had."""
        return getattr(self.local, "lease", None)

    @property
    def fence(self) -> Optional[int]:
        """This holder's fencing token, or None when it does not hold the lock."""
        lease = self._lease
        if getattr(self.local, "token", None) is None or lease is None:
            return None
        return lease.fence

    @property
    def lost(self) -> LeaseLost:
        """Set once this holder may have lost the lock (with auto_renewal; see `LeaseLost`).

        Per holder: another thread acquiring the same Lock object gets an Event of its own.
        """
        lease = self._lease
        return lease.lost if lease is not None else LeaseLost()

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
        if self.auto_renewal:  # only a watchdog can keep an old lease of this holder alive
            self._let_own_lease_run_out()
        while not self.do_acquire(token):
            if not blocking:
                return False
            if self.fair:
                if not self._wait_in_turn(token, sleep, stop_trying_at):
                    return False
                break
            next_try_at = time.monotonic() + sleep
            if stop_trying_at is not None and next_try_at > stop_trying_at:
                return False
            time.sleep(sleep)
        self.local.token = token
        if self.auto_renewal:
            self._start_watchdog()
        return True

    def _let_own_lease_run_out(self) -> None:
        """Acquiring again what this holder holds: stop renewing the old lease (issue #16.5).

        As with redis-py's Lock, the new acquire then succeeds once the old lease has run out;
        a watchdog still renewing it would make that never.
        """
        lease = self._lease
        if lease is not None and lease.watchdog is not None and self.local.token is not None:
            lease.stop_renewing()
            lease.lost.set()

    def do_acquire(self, token) -> bool:
        ttl_ms = _ttl_ms(self.timeout, self.name)
        sent_at = time.monotonic()
        fence = self._run(self.lua_acquire, 2, self.name, self.fence_counter_key, token, ttl_ms)
        if not fence:
            return False
        ends_at = lease_end(sent_at, self.timeout) if self.auto_renewal else None
        self.local.lease = Lease(token, int(fence), ends_at)
        return True

    def _wait_in_turn(self, token, sleep, stop_trying_at) -> bool:
        turn = wait_in_turn(self, token, _ttl_ms(self.timeout, self.name), sleep,
                                 stop_trying_at)
        if turn is None:
            return False
        fence, not_before = turn  # the lease began after `not_before`: `lost` counts from there
        ends_at = lease_end(not_before, self.timeout) if self.auto_renewal else None
        self.local.lease = Lease(token, fence, ends_at)
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
        if self.fair:  # hand over to the first waiter in the same step
            return self._run(self.lua_release_and_hand_over, 3, self.name,
                             self.fence_counter_key, queue_key(self.name), token)
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
        if self.auto_renewal:
            lease = self._lease
            if lease is not None and self.local.token is not None:  # only a holder stops its own
                lease.stop_renewing()
        super().release()

    def do_extend(self, additional_time, replace_ttl):
        sent_at = time.monotonic()
        done = super().do_extend(additional_time, replace_ttl)
        if replace_ttl:  # may be shorter than the watchdog's last lease: `lost` must know
            self._lease_renewed_until(lease_end(sent_at, additional_time))
        return done

    def do_reacquire(self):
        sent_at = time.monotonic()
        done = super().do_reacquire()
        self._lease_renewed_until(lease_end(sent_at, self.timeout))
        return done

    def _lease_renewed_until(self, ends_at: float) -> None:
        lease = self._lease
        if lease is not None and lease.ends_at is not None:
            lease.lost.renewed_until(ends_at)

    def fenced_write(self, key: str, value) -> None:
        """Set `key` to `value` unless a newer holder has written it (see the module docstring).

        Raises LockLostError once `lost` is set, StaleFenceError when the resource has seen a
        newer fence, LockError when this lock is not held or `key` is one of the lock's own keys.
        """
        self._refuse_own_keys(key)
        if self.lost.is_set():
            raise LockLostError(f"lock {self.name!r} was lost (its lease may have ended): "
                                f"not writing {key!r}", lock_name=self.name)
        fence = self.fence
        if fence is None:
            raise LockError(f"cannot write {key!r} through lock {self.name!r}: it is not held",
                            lock_name=self.name)
        if not fenced_write(self.redis, key, value, fence):
            raise StaleFenceError(f"write to {key!r} refused: fence {fence} of lock {self.name!r} "
                                  "is older than one the resource has seen", lock_name=self.name)

    def _refuse_own_keys(self, key) -> None:
        encode = self.redis.get_encoder().encode
        own = {encode(self.name), encode(self.fence_counter_key)}
        if {encode(key), encode(highest_fence_key(key))} & own:
            raise LockError(f"lock {self.name!r} cannot write {key!r}: that would overwrite the "
                            "lock's own keys; name the resource differently", lock_name=self.name)

    def _start_watchdog(self) -> None:
        lease = self._lease
        lease.watchdog = Watchdog(lease, self.redis, self.name, self.lua_reacquire,
                                  self.timeout, self.renewal_interval)
        lease.watchdog.start()


class _HolderLocal(threading.local):
    """A holder's token and lease, per thread; None in a thread that has not acquired."""

    token = None
    lease: Optional[Lease] = None


def _ttl_ms(timeout: Optional[Number], name: str) -> int:
    """The lease in ms for the acquire script, 0 for none (timeout None or 0, as redis-py).

    A timeout under 1 ms or negative is refused, as Redis refuses it to redis-py ("invalid
    expire time"): the script would otherwise set no expiry at all (issue #16.3).
    """
    if not timeout:
        return 0
    ttl_ms = int(timeout * 1000)
    if ttl_ms < 1:
        raise LockError(f"timeout {timeout!r} s for lock {name!r}: a lease must be at least "
                        "0.001 s (or None: no expiry)", lock_name=name)
    return ttl_ms
