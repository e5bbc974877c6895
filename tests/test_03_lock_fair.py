"""Lesson 03: `Lock(..., fair=True)` wakes its waiters and serves them in arrival order
(issue #16, item 9). Each waiter polls only every 5 s here: what it does sooner, a wake-up did.
"""
import threading
import time
import uuid

import pytest
import redis

from conftest import wait_until
from locks import Lock

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
