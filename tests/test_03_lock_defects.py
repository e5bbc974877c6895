"""Lesson 03: the six defects of issue #16, each made to happen against real Redis servers.

Each test failed on the code before the fix (locks/lock.py at fdb671b) and passes now.
"""
import gc
import os
import signal
import threading
import time
import uuid

import pytest
import redis

from conftest import wait_until
from labkit import RedisServer
from locks import Lock, LockError, LockLostError, LockNotOwnedError


@pytest.fixture
def name():
    return f"lesson03:defect:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(each_server_url):
    client = redis.Redis.from_url(each_server_url, decode_responses=True)
    yield client
    client.close()


def others_can_take(client, name) -> bool:
    other = Lock(client, name, timeout=5)
    taken = other.acquire(blocking=False)
    if taken:
        other.release()
    return taken


# --- 1. a Lock shared by threads: each holder keeps its own `lost` and its own renewal --------

def test_threads_sharing_a_lock_keep_their_own_lost_and_their_own_renewal(client, name):
    lock = Lock(client, name, timeout=1.0, auto_renewal=True)   # thread_local=True, as redis-py
    lock.acquire()                                  # this thread is T1
    client.delete(name)                             # T1's lease is gone (an admin, a failover)
    assert lock.lost.wait(timeout=5)
    t2_holds, t2_may_finish, t2_saw = threading.Event(), threading.Event(), {}

    def t2():
        t2_saw["acquired"] = lock.acquire(blocking_timeout=5)
        t2_holds.set()
        t2_may_finish.wait(timeout=20)
        t2_saw.update(owned=lock.owned(), lost=lock.lost.is_set())
        lock.release()

    holder = threading.Thread(target=t2)
    holder.start()
    try:
        assert t2_holds.wait(timeout=10) and t2_saw["acquired"]
        assert lock.lost.is_set()                   # T2's acquire did not tell T1 all is well
        with pytest.raises(LockNotOwnedError):
            lock.release()                          # T1's release must not stop T2's renewal…
        stranger_errors = []
        stranger = threading.Thread(target=lambda: _release_into(lock, stranger_errors))
        stranger.start()
        stranger.join(timeout=10)
        assert len(stranger_errors) == 1            # …nor a release from a thread holding nothing
        assert isinstance(stranger_errors[0], LockError)
        time.sleep(2.5)                             # 2.5 × the TTL: only T2's renewal keeps it
        assert not others_can_take(client, name)
    finally:
        t2_may_finish.set()
        holder.join(timeout=10)
    assert t2_saw == {"acquired": True, "owned": True, "lost": False}


def _release_into(lock, errors):
    try:
        lock.release()
    except Exception as error:  # redis-py's own Lock raises AttributeError here: no token yet
        errors.append(error)


# --- 2. an acquire either succeeds whole or leaves nothing behind -----------------------------

def test_an_acquire_that_fails_on_its_fence_counter_leaves_no_lock_behind(client, name):
    target_lock = Lock(client, f"{name}:a:fence", timeout=5)   # one_per_target, target "a:fence"
    target_lock.acquire()                  # its key is the counter of the lock for target "a"
    lock = Lock(client, f"{name}:a", timeout=None)
    with pytest.raises(redis.ResponseError):
        lock.acquire(blocking=False)
    assert not client.exists(f"{name}:a")  # not held for ever by a token nobody has
    target_lock.release()
    with lock:
        assert lock.fence == 1


# --- 3. a lease Redis cannot set is refused, never turned into no expiry ----------------------

@pytest.mark.parametrize("timeout", [0.0004, -1])
def test_a_lease_under_a_millisecond_or_negative_is_refused_as_redis_py_refuses_it(client, name,
                                                                                  timeout):
    try:
        with pytest.raises((LockError, redis.ResponseError)):   # redis-py: "invalid expire time"
            Lock(client, name, timeout=timeout).acquire(blocking=False)
        assert not client.exists(name)
    finally:
        client.delete(name)


# --- 4. `lost` is told before anyone else can take the lock ----------------------------------

def test_lost_is_set_before_another_client_can_take_the_lock_when_renewals_fail(
        client, each_server_url, name):
    user = f"holder-{name.rsplit(':', 1)[-1]}"
    client.acl_setuser(user, enabled=True, nopass=True, keys=["*"], commands=["+@all"])
    holder_client = redis.Redis.from_url(each_server_url, username=user, password="")
    try:
        # the next renewal is due 0.45 s after the acquire, the lease ends at 0.6 s
        lock = Lock(holder_client, name, timeout=0.6, auto_renewal=True, renewal_interval=0.45)
        lock.acquire()
        client.acl_setuser(user, enabled=False)     # from now on every renewal fails to connect
        client.client_kill_filter(user=user)
        assert Lock(client, name, timeout=5).acquire(blocking_timeout=5, sleep=0.005)
        assert lock.lost.is_set()                   # the holder knew before we got in
        with pytest.raises(LockLostError):
            lock.fenced_write(name + ":resource", "too late")
    finally:
        client.acl_deluser(user)
        holder_client.close()


def test_lost_is_set_when_the_lease_ends_even_while_a_renewal_request_hangs():
    with RedisServer() as server:   # a server of its own: it is frozen with SIGSTOP
        client = redis.Redis.from_url(server.url)   # no socket timeout: a request can hang
        lock = Lock(client, "lesson03:hang", timeout=0.6, auto_renewal=True,
                    renewal_interval=0.2)
        lock.acquire()
        frozen_at = time.monotonic()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            assert lock.lost.wait(timeout=3)        # the renewal sent now never answers
            assert time.monotonic() - frozen_at < 0.6 + 0.5  # by the lease's end (+ a busy CPU)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        # Release before closing: that stops the watchdog once its renewal, stuck until now, is
        # answered. Closing the client under it would break that read with a ValueError in the
        # watchdog's thread. The lease has ended, or ends within the drift allowance: either
        # answer is right.
        try:
            lock.release()
        except LockNotOwnedError:
            pass
        client.close()


# --- 5. a lock nobody holds any more is renewed no more ----------------------------------------

def test_a_renewing_lock_dropped_without_a_release_runs_out(client, name):
    lock = Lock(client, name, timeout=0.5, auto_renewal=True)
    lock.acquire()
    del lock
    gc.collect()
    assert wait_until(lambda: not client.exists(name), timeout=5)


def test_a_renewing_lock_whose_thread_ended_holding_it_runs_out(client, name):
    lock = Lock(client, name, timeout=0.5, auto_renewal=True)   # thread-local token: gone with it
    holder = threading.Thread(target=lock.acquire)
    holder.start()
    holder.join(timeout=10)
    assert client.exists(name)
    assert wait_until(lambda: not client.exists(name), timeout=5)


def test_acquiring_a_held_renewing_lock_again_succeeds_once_its_first_lease_runs_out(client,
                                                                                    name):
    lock = Lock(client, name, timeout=0.5, auto_renewal=True)
    lock.acquire()
    first_fence = lock.fence
    assert lock.acquire(blocking_timeout=5, sleep=0.05)   # as redis-py's Lock: after the TTL
    assert lock.owned() and lock.fence == first_fence + 1
    lock.release()


# --- 6. a fenced write never touches the lock's own keys ---------------------------------------

def test_a_fenced_write_to_the_locks_own_keys_is_refused_and_the_lock_stays_whole(client, name):
    with Lock(client, name, timeout=5) as lock:
        token = lock.local.token.decode()
        for key in (name, name + ":fence"):          # "lock report, write report"
            with pytest.raises(LockError):
                lock.fenced_write(key, "the report")
        assert client.get(name) == token and 0 < client.pttl(name) <= 5000
    with Lock(client, name, timeout=5) as again:     # nobody is locked out, fences still count
        assert again.fence == 2


def test_a_tracked_lease_makes_its_one_lost_event_before_another_thread_can_read_it():
    """`lost` is made lazily only for a lease nothing tracks; an auto-renewing lease (a deadline)
    makes it at once: two threads sharing a Lock (thread_local=False) racing to read a lazily
    made Event could get two, and the watchdog would set or renew only one of them."""
    from locks.lease import Lease
    tracked = Lease(b"token", 1, ends_at=time.monotonic() + 10)
    assert tracked._lost is not None and tracked.lost is tracked._lost
    assert tracked.lost.ends_at == tracked.ends_at
    untracked = Lease(b"token", 1)
    assert untracked._lost is None          # no Event made for a holder that never reads it
    assert untracked.lost is untracked.lost and not untracked.lost.is_set()
