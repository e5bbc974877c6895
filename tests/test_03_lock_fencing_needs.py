"""Lesson 03: fencing is only as good as the Redis that keeps the fences (issue #16, item 7).

An eviction policy that may evict any key (`allkeys-*`) evicts the fence counter under memory
pressure: the next holder's fence starts again at 1, no newer than an old holder's, and the old
holder's stale write passes the check. With `noeviction` the write that needs memory is refused
instead, and the fences keep counting.
"""
import time

import pytest
import redis

from labkit import RedisServer
from locks import Lock, StaleFenceError, fence_key, highest_fence_key

FILLER = b"x" * 100_000


def under_memory_pressure(client, policy: str):
    """Cap the server's memory just above what it uses now, with `policy`."""
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory", used + 2_000_000)


def fill_until_gone(client, key: str, limit: int = 500) -> bool:
    """Write 100 kB values until `key` has been evicted (True), or `limit` values (False)."""
    for number in range(limit):
        client.set(f"filler:{number}", FILLER)
        if not client.exists(key):
            return True
    return False


@pytest.fixture
def server():
    with RedisServer() as server:   # a server of its own: its memory is capped
        yield server


def a_holder_paused_past_its_lease(client, name):
    for _ in range(3):
        with Lock(client, name, timeout=5):
            pass                    # fences 1, 2, 3
    old = Lock(client, name, timeout=0.2)
    old.acquire()                   # fence 4, and then the holder stalls past its lease
    old.fenced_write("report:latest", "from fence 4")
    time.sleep(0.3)
    return old


def test_an_allkeys_eviction_policy_evicts_the_fence_counter_and_a_stale_write_passes(server):
    client = redis.Redis.from_url(server.url)
    old = a_holder_paused_past_its_lease(client, "report")
    under_memory_pressure(client, "allkeys-random")
    assert fill_until_gone(client, fence_key("report"))           # the lock's counter…
    assert fill_until_gone(client, highest_fence_key("report:latest"))  # …and the resource's
    client.config_set("maxmemory", 0)
    with Lock(client, "report", timeout=5) as new:
        assert new.fence == 1       # counting again from 1: not newer than the old holder's 4
        new.fenced_write("report:latest", "from the new holder")
        old.fenced_write("report:latest", "from fence 4, stale")   # accepted: 4 >= 1
    assert client.get("report:latest") == b"from fence 4, stale"
    client.close()


def test_with_noeviction_the_write_that_needs_memory_fails_and_the_fences_keep_counting(server):
    client = redis.Redis.from_url(server.url)
    old = a_holder_paused_past_its_lease(client, "report")
    under_memory_pressure(client, "noeviction")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        fill_until_gone(client, fence_key("report"))
    client.config_set("maxmemory", 0)
    with Lock(client, "report", timeout=5) as new:
        assert new.fence == 5
        new.fenced_write("report:latest", "from the new holder")
        with pytest.raises(StaleFenceError):
            old.fenced_write("report:latest", "from fence 4, stale")
    assert client.get("report:latest") == b"from the new holder"
    client.close()
