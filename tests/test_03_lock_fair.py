"""Lesson 03: `Lock(..., fair=True)` wakes its waiters and serves them in arrival order
(issue #16, item 9). Each waiter polls only every 5 s here: what it does sooner, a wake-up did.
"""
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from conftest import wait_until
from labkit import REPO_ROOT
from locks import Lock, LockError

POLL = 5.0   # the fallback's period: far longer than any wait below


@pytest.fixture
def name():
    return f"lesson03:fair:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(each_server_url):
    client = redis.Redis.from_url(each_server_url)
    yield client
    client.close()


def start_waiter(client, name, who, served, **acquire):
    lock = Lock(client, name, timeout=5, sleep=POLL, fair=True)

    def wait():
        if lock.acquire(**acquire):
            served.append((who, time.monotonic(), lock.fence))
            lock.release()
        else:
            served.append((who, None, None))
    thread = threading.Thread(target=wait, name=f"waiter-{who}")
    thread.start()
    return thread


def queued(client, name, count):
    return wait_until(lambda: client.llen(f"{name}:waiters") == count, timeout=10)


def test_a_release_wakes_the_blocked_waiter_at_once_instead_of_after_its_poll(client, name):
    holder = Lock(client, name, timeout=5, fair=True)
    holder.acquire()
    served = []
    waiter = start_waiter(client, name, "w", served, blocking_timeout=30)
    try:
        assert queued(client, name, 1)
        released_at = time.monotonic()
        holder.release()
    finally:
        waiter.join(timeout=30)
    (who, acquired_at, fence), = served
    assert acquired_at - released_at < POLL / 2     # woken, not polled
    assert fence == 2


def test_waiters_are_served_in_the_order_they_arrived(client, name):
    holder = Lock(client, name, timeout=5, fair=True)
    holder.acquire()
    served, waiters = [], []
    try:
        for count, who in enumerate(["first", "second", "third"], start=1):
            waiters.append(start_waiter(client, name, who, served, blocking_timeout=30))
            assert queued(client, name, count)      # each joins after the one before
        holder.release()
    finally:
        for waiter in waiters:
            waiter.join(timeout=30)
    assert [who for who, _, _ in served] == ["first", "second", "third"]
    assert [fence for _, _, fence in served] == [2, 3, 4]
    assert served[-1][1] - served[0][1] < POLL / 2


def test_a_waiter_that_gave_up_is_skipped_and_the_next_one_is_served(client, name):
    holder = Lock(client, name, timeout=5, fair=True)
    holder.acquire()
    served = []
    quitter = start_waiter(client, name, "quitter", served, blocking_timeout=0.3)
    assert queued(client, name, 1)
    stayer = start_waiter(client, name, "stayer", served, blocking_timeout=30)
    try:
        quitter.join(timeout=10)
        assert served == [("quitter", None, None)]
        assert queued(client, name, 1)             # the quitter left the queue
        holder.release()
    finally:
        stayer.join(timeout=30)
    assert [who for who, _, _ in served] == ["quitter", "stayer"]


def test_a_fair_lock_is_taken_at_once_when_free_and_polls_nobody(client, name):
    with Lock(client, name, timeout=5, fair=True) as lock:
        assert lock.fence == 1 and not client.exists(f"{name}:waiters")
    assert not client.exists(name)
    again = Lock(client, name, timeout=5, fair=True)
    assert again.acquire(blocking=False)
    again.release()


# A waiter in a process of its own, to be SIGKILLed while it queues: it prints its fence once it
# holds the lock, then keeps it until killed.
WAITER = """
import sys, time, redis
from locks import Lock
lock = Lock(redis.Redis.from_url(sys.argv[1]), sys.argv[2], timeout=1, sleep=float(sys.argv[3]),
            fair=True)
if lock.acquire(blocking_timeout=30):
    print(lock.fence, flush=True)
    time.sleep(60)
"""


def start_waiter_process(url, name, sleep):
    """`sleep`: how often it renews its place in the queue; the place lapses 3 × `sleep` (at
    least 0.5 s) after its last renewal."""
    return subprocess.Popen([sys.executable, "-c", WAITER, url, name, str(sleep)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("killed", ["long enough ago", "just now"])
def test_a_sigkilled_waiter_costs_the_queue_nothing_or_at_most_one_lease(redis_url, name, killed):
    client = redis.Redis.from_url(redis_url)
    holder = Lock(client, name, timeout=10, fair=True)
    holder.acquire()
    doomed = start_waiter_process(redis_url, name, sleep=1.0)   # its place lives 2–3 s after death
    survivor = None
    try:
        assert queued(client, name, 1)
        survivor = start_waiter_process(redis_url, name, sleep=0.1)
        assert queued(client, name, 2)
        doomed_token, survivor_token = client.lrange(f"{name}:waiters", 0, -1)
        doomed.kill()
        doomed.wait(timeout=10)
        place = f"{name}:waiting:{doomed_token.decode()}"
        if killed == "long enough ago":   # its place lapsed: it is skipped
            assert wait_until(lambda: not client.exists(place), timeout=10)
        else:                             # its place is still alive: the lock goes to the dead
            assert client.exists(place)
        released_at = time.monotonic()
        holder.release()
        if killed == "just now":
            assert client.get(name) == doomed_token     # handed to a dead process...
        fence = int(survivor.stdout.readline())         # ...until its 1 s lease ends
        waited = time.monotonic() - released_at
        assert client.get(name) == survivor_token
        if killed == "long enough ago":
            assert fence == 2                           # handed straight over: no lease lost
        else:
            assert fence == 3 and 0.9 <= waited < 10    # one lease lost, then the next in line
    finally:
        for process in (doomed, survivor):
            if process is not None:
                process.kill()
                process.wait(timeout=10)
        client.close()


def test_a_fair_lock_without_a_lease_is_refused(client, name):
    # handed to a waiter that died while it queued, it would never be freed
    with pytest.raises(LockError, match="fair=True needs a timeout"):
        Lock(client, name, fair=True)
