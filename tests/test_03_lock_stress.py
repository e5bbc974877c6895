"""Lesson 03: `locks.Lock` under a randomized stress of real processes (issue #16, item 11).

Five child processes take turns on one lock with a 250 ms lease (three of them auto-renewing):
each acquires (waiting at most 1 s), makes a few fenced writes to one resource key, sometimes
extends, and releases. A parent "chaos" loop, seeded, meanwhile SIGSTOPs a random child for
longer than the lease and SIGCONTs it, and now and then SIGKILLs a child and starts another.
Part of the chaos is forced, so the test cannot pass by luck: one renewing and one plain holder
are paused past their lease while a newer holder writes, and one holder is killed.

Then the checker reads the resource's write log — every accepted write, in the order Redis
accepted it — and asks what fencing promises: fences never go back (no stale write accepted),
two holders' writes never interleave, a holder paused past its lease is refused when it comes
back, a killed holder's lock is taken again, and a fresh acquire still succeeds within a lease.

Each run prints its seed (shown with a failure, or with -rP): to repeat a run, or to run longer::

    STRESS_SEED=123456 STRESS_SECONDS=60 .venv/bin/python -m pytest -p no:xdist -q -rP \\
        tests/test_03_lock_stress.py
"""
from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import redis

import locks.lock
from labkit.children import Children
from locks import (FENCED_WRITE_SCRIPT, Lock, LockError, LockLostError, StaleFenceError,
                   fenced_write, highest_fence_key)

LEASE = 0.25            # s: short, so that pauses, kills and expiries happen many times a second
CHILDREN = 5            # w1, w3, w5 … renew their lease (auto_renewal), w2, w4 … do not
POLL = 0.05             # a waiter's `sleep`
ACQUIRE_WAIT = 1.0      # each acquire gives up after this: a child then checks whether to stop
WAIT = 20.0             # every forced wait has a limit: a broken lock fails instead of hanging
REFUSED = ("LockLostError", "StaleFenceError")

# The write log must list accepted writes in the order Redis accepted them, so it is appended in
# the same atomic step as the write: this script runs locks' own FENCED_WRITE_SCRIPT (its text,
# as a Lua function: the same fence check) and, when it wrote, appends the entry with Redis's
# clock. The children install it under `Lock.fenced_write` (see `_log_every_accepted_write`), so
# their writes still go through the Lock's own `lost` check and StaleFenceError; the parent's
# last checks call the unpatched `locks.fenced_write`.
# KEYS[1] resource, KEYS[2] its highest fence, KEYS[3] the write log
# ARGV[1] value (a JSON object), ARGV[2] the writer's fence
# returns what FENCED_WRITE_SCRIPT returns: 1 written (and logged), 0 refused
LOGGED_FENCED_WRITE = f"""
    local function fenced_write()
        {FENCED_WRITE_SCRIPT}
    end
    local written = fenced_write()
    if written == 1 then
        local entry = cjson.decode(ARGV[1])
        local now = redis.call('time')
        entry['t'] = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
        redis.call('rpush', KEYS[3], cjson.encode(entry))
    end
    return written
"""


# --- the children ----------------------------------------------------------------------------

@dataclass
class Signals:
    """Shared memory between the parent and one child. RawValues take no lock, so the parent
    never waits on a lock that a SIGSTOPped child holds."""
    ready: object
    holding: object     # the child's fence while it holds the lock (between acquire and release)
    park: object        # parent → child: at your next hold, write once, then wait to be paused
    parked: object      # child → parent: the fence it waits with
    unpark: object      # parent → child: go on writing (it has been paused past its lease)


def _log_every_accepted_write(client, prefix: str) -> None:
    script = client.register_script(LOGGED_FENCED_WRITE)

    def write_and_log(client, key, value, fence):
        return bool(script(keys=[key, highest_fence_key(key), f"{prefix}:log"],
                           args=[value, fence], client=client))
    locks.lock.fenced_write = write_and_log   # in this child process only


def _write(client, prefix, lock, who, fence, seq) -> str:
    try:
        lock.fenced_write(f"{prefix}:resource",
                          json.dumps({"who": who, "fence": fence, "seq": seq}))
        result = "accepted"
    except (LockLostError, StaleFenceError) as error:
        result = type(error).__name__
    client.rpush(f"{prefix}:outcomes", json.dumps(
        {"who": who, "fence": fence, "seq": seq, "result": result, "t": time.time()}))
    return result


def _wait_to_be_paused(me: Signals, stop, fence) -> None:
    me.parked.value = fence
    while not me.unpark.value and not stop.value:   # the parent SIGSTOPs this process here
        time.sleep(0.002)
    me.park.value = 0


def _hold_and_write(client, prefix, who, lock, rng, me, stop, seq) -> int:
    """One turn: a few fenced writes, perhaps an extend, stopping at the first refusal."""
    fence = lock.fence
    me.holding.value = fence
    writes, done = rng.randint(1, 4), 0
    while done < writes:
        seq += 1
        if _write(client, prefix, lock, who, fence, seq) != "accepted":
            break
        done += 1
        if me.park.value:
            _wait_to_be_paused(me, stop, fence)
            writes = done + 1   # back from the pause: one more write, which must be refused
            continue
        time.sleep(rng.uniform(0, LEASE / 8))
        if rng.random() < 0.3:
            try:
                lock.extend(LEASE, replace_ttl=True)
            except LockError:   # the lease is gone: stop before doing harm
                break
    me.holding.value = 0
    return seq


def _take_turns(url, prefix, who, auto_renewal, fair, seed, me: Signals, stop) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    _log_every_accepted_write(client, prefix)
    rng = random.Random(f"{seed}:{who}")
    lock = Lock(client, f"{prefix}:lock", timeout=LEASE, sleep=POLL, auto_renewal=auto_renewal,
                fair=fair)
    seq = 0
    me.ready.value = 1
    while not stop.value:
        if not lock.acquire(blocking_timeout=ACQUIRE_WAIT):
            continue
        seq = _hold_and_write(client, prefix, who, lock, rng, me, stop, seq)
        try:
            lock.release()
        except LockError:   # its lease ran out meanwhile
            pass
        time.sleep(rng.uniform(0, LEASE / 4))   # other work: the others get their turns too


# --- the parent: chaos ------------------------------------------------------------------------

@dataclass
class Pause:
    who: str
    auto_renewal: bool
    fence: int          # what the child held when it was stopped, 0 if nothing
    stopped_at: float
    resumed_at: float
    forced: bool


@dataclass
class Kill:
    who: str
    fence: int
    at: float


@dataclass
class Chaos:
    url: str
    prefix: str
    fair: bool
    seed: int
    children: Children
    stop: object
    client: redis.Redis
    alive: dict = field(default_factory=dict)      # who → (process, Signals, auto_renewal)
    pauses: list = field(default_factory=list)
    kills: list = field(default_factory=list)
    started: int = 0
    stopped_at: float = 0.0
    timings: dict = field(default_factory=dict)   # s each phase took

    def last_logged_fence(self) -> int:
        last = self.client.lindex(f"{self.prefix}:log", -1)
        return json.loads(last)["fence"] if last else 0

    def outcomes_after(self, pause: Pause) -> list[dict]:
        return [o for o in _read(self.client, f"{self.prefix}:outcomes")
                if (o["who"], o["fence"]) == (pause.who, pause.fence)
                and o["t"] > pause.resumed_at]

    def start_child(self):
        self.started += 1
        who, auto_renewal = f"w{self.started}", self.started % 2 == 1
        raw = self.children.context.RawValue
        me = Signals(*(raw("q", 0) for _ in range(5)))
        process = self.children.start(_take_turns, self.url, self.prefix, who, auto_renewal,
                                      self.fair, self.seed, me, self.stop, name=who)
        self.alive[who] = (process, me, auto_renewal)
        return who

    def start(self):
        for _ in range(CHILDREN):
            self.start_child()
        assert _wait_for(lambda: all(me.ready.value for _, me, _ in self.alive.values()), 60), \
            "the children did not start within 60 s"

    def freeze(self, who):
        process, me, auto_renewal = self.alive[who]
        assert process.is_alive(), f"{who} died by itself (exit code {process.exitcode})"
        self.children.stop(process)
        stopped_at = time.time()
        assert _wait_for(lambda: _is_stopped(process.pid), 5), f"{who} did not stop"
        return process, me, auto_renewal, stopped_at

    def pause(self, who, seconds, forced=False, until=lambda: True) -> Pause:
        process, me, auto_renewal, stopped_at = self.freeze(who)
        fence = me.holding.value
        assert _wait_for(lambda: time.time() - stopped_at >= seconds and until(), WAIT), \
            f"{who} was paused, holding fence {fence}, and nobody wrote after it"
        me.unpark.value = 1
        resumed_at = time.time()   # before SIGCONT: whatever it does after is later than this
        self.children.resume(process)
        self.pauses.append(Pause(who, auto_renewal, fence, stopped_at, resumed_at, forced))
        return self.pauses[-1]

    def kill(self, who) -> Kill:
        process, me, _, _ = self.freeze(who)   # first frozen, so that what it held is known
        del self.alive[who]
        self.children.kill(process)
        self.kills.append(Kill(who, me.holding.value, time.time()))
        self.start_child()
        return self.kills[-1]

    def force_pause_past_the_lease(self, auto_renewal: bool) -> Pause:
        """The first child of the kind to hold the lock is paused until a newer holder has
        written (lesson 03's step f, in the crowd). Any of them: the polling lock is unfair, one
        chosen child could wait long for its turn."""
        kind = {w: me for w, (_, me, renews) in self.alive.items() if renews == auto_renewal}
        for me in kind.values():
            me.park.value = 1
        assert _wait_for(lambda: any(me.parked.value for me in kind.values()), WAIT), \
            "no child held the lock to be paused"
        for me in kind.values():
            me.park.value = 0
        who, me = next((w, me) for w, me in kind.items() if me.parked.value)
        for other in kind.values():
            other.unpark.value = other is not me   # parked at the same moment: not chosen
        pause = self.pause(who, 1.5 * LEASE, forced=True,
                           until=lambda: self.last_logged_fence() > me.parked.value)
        assert _wait_for(lambda: self.outcomes_after(pause), WAIT), \
            f"{who} was paused past its lease and never tried to write again"
        return pause

    def force_kill_of_a_holder(self) -> Kill:
        def holder():
            return next((w for w, (_, me, _) in self.alive.items() if me.holding.value), None)
        assert _wait_for(holder, WAIT), "nobody held the lock to be killed"
        kill = self.kill(holder())
        assert _wait_for(lambda: self.last_logged_fence() > kill.fence, WAIT), \
            f"{kill}: nobody wrote after the holder was killed"
        return kill

    def run(self, rng, seconds: float) -> None:
        started_at = time.monotonic()
        self.start()
        began = time.monotonic()
        self.timings["children started"] = began - started_at
        self.force_pause_past_the_lease(auto_renewal=True)
        self.force_pause_past_the_lease(auto_renewal=False)
        self.force_kill_of_a_holder()
        self.timings["forced chaos"] = time.monotonic() - began
        quiet_at = began + seconds - 3 * LEASE
        while time.monotonic() < quiet_at:
            time.sleep(rng.uniform(0.05, 0.3))
            action, who = rng.random(), rng.choice(sorted(self.alive))
            holders = [w for w, (_, me, _) in self.alive.items() if me.holding.value]
            if holders and rng.random() < 0.5:
                who = holders[0]   # the holder, half the time: the pause that matters most
            if action < 0.55:
                self.pause(who, rng.uniform(1.2, 2.5) * LEASE)
            elif action < 0.75:
                self.kill(who)
        # a quiet end, long enough for the lease of a holder killed last to run out
        time.sleep(max(3 * LEASE, began + seconds - time.monotonic()))
        self.stop.value = 1
        self.stopped_at = time.time()
        killed = {kill.who for kill in self.kills}
        self.children.join(WAIT, expect_killed=[p for p in self.children.processes
                                                if p.name in killed])
        self.timings["chaos"] = time.monotonic() - began
        self.timings["children stopped"] = time.time() - self.stopped_at


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


def _is_stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def _client(url):
    return redis.Redis.from_url(url, decode_responses=True)


def _read(client, key) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(key, 0, -1)]


# --- the checker -----------------------------------------------------------------------------

def check_fences_never_go_back(log: list[dict]) -> None:
    """No stale write accepted; with one holder per fence (below), two holders' writes never
    interleave either."""
    highest = 0
    for position, entry in enumerate(log):
        assert entry["fence"] >= highest, (
            f"stale write accepted: log entry {position} {entry} after fence {highest}; "
            f"around it: {log[max(0, position - 3):position + 2]}")
        highest = entry["fence"]


def check_each_fence_has_one_holder_writing_in_order(log: list[dict]) -> None:
    writers, last_seq = defaultdict(set), {}
    for entry in log:
        writers[entry["fence"]].add(entry["who"])
        assert entry["seq"] > last_seq.get(entry["who"], 0), f"out of order: {entry}"
        last_seq[entry["who"]] = entry["seq"]
    shared = {fence: who for fence, who in writers.items() if len(who) > 1}
    assert not shared, f"one fence, several holders: {shared}"


def check_the_children_saw_what_the_log_says(log, outcomes, killed: set) -> None:
    logged = {(e["who"], e["seq"]) for e in log}
    accepted = {(o["who"], o["seq"]) for o in outcomes if o["result"] == "accepted"}
    refused = {(o["who"], o["seq"]) for o in outcomes if o["result"] != "accepted"}
    assert not refused & logged, f"refused, yet in the log: {sorted(refused & logged)}"
    assert accepted <= logged, f"accepted, yet not in the log: {sorted(accepted - logged)}"
    unseen = {(who, seq) for who, seq in logged - accepted if who not in killed}
    assert not unseen, f"in the log, but its writer never heard of it: {sorted(unseen)}"


def check_paused_holders_were_refused(log, outcomes, pauses) -> list[dict]:
    """Every refusal of a holder back from a pause past its lease; none of its writes after."""
    refusals = []
    for pause in (p for p in pauses if p.fence):
        newer = any(pause.stopped_at < float(e["t"]) < pause.resumed_at and e["fence"] > pause.fence
                    for e in log)
        late = [e for e in log if (e["who"], e["fence"]) == (pause.who, pause.fence)
                and float(e["t"]) >= pause.resumed_at]
        if newer:  # the resource has seen a newer fence: it refuses every late write
            assert not late, f"{pause}: written after the pause: {late}"
        elif pause.auto_renewal:
            # `lost` has passed its deadline — but a write checked `lost` just before the SIGSTOP
            # landed and sent after SIGCONT is a window no client-side check can close (that is
            # what the resource's fence is for): at most that one write may land late.
            assert len(late) <= 1, f"{pause}: written after the pause: {late}"
        after = [o for o in outcomes if (o["who"], o["fence"]) == (pause.who, pause.fence)
                 and o["t"] > pause.resumed_at]
        refusals += [o for o in after if o["result"] in REFUSED]
        if pause.forced:
            expected = "LockLostError" if pause.auto_renewal else "StaleFenceError"
            assert after and after[0]["result"] == expected, \
                f"{pause}: its first write after the pause should get {expected}: {after}"
    return refusals


def check_killed_holders_lock_was_taken_again(log, kills, stopped_at) -> None:
    """A holder killed in the run's last second is left out: the run ends with a quiet time,
    but a loaded machine may need longer."""
    for kill in (k for k in kills if k.fence and k.at < stopped_at - 1.0):
        assert any(e["fence"] > kill.fence and float(e["t"]) > kill.at for e in log), \
            f"{kill}: nobody wrote after the holder was killed"


def check_a_fresh_acquire_succeeds_within_a_lease(client, prefix, fair, log) -> None:
    lock = Lock(client, f"{prefix}:lock", timeout=10, sleep=POLL, fair=fair)
    assert lock.acquire(blocking_timeout=LEASE), "the lock is stuck after the stress"
    try:
        assert lock.fence > max(e["fence"] for e in log)
        lock.fenced_write(f"{prefix}:resource", "after the stress")
        assert not fenced_write(client, f"{prefix}:resource", "stale", log[-1]["fence"])
        assert client.get(f"{prefix}:resource") == "after the stress"
    finally:
        lock.release()


# --- the test --------------------------------------------------------------------------------

SECONDS = float(os.environ.get("STRESS_SECONDS") or 8)


@pytest.mark.timeout(120 + max(0.0, SECONDS - 8))
@pytest.mark.parametrize("fair", [False, True], ids=["polling", "fair"])
def test_paused_and_killed_holders_never_get_a_stale_write_accepted(each_server_url, fair):
    seed = int(os.environ.get("STRESS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"STRESS_SEED={seed} STRESS_SECONDS={SECONDS} fair={fair} on {each_server_url}")
    prefix = f"lesson03:stress:{uuid.uuid4().hex[:8]}"
    client = _client(each_server_url)
    try:
        with Children() as children:
            chaos = Chaos(each_server_url, prefix, fair, seed, children,
                          children.context.RawValue("q", 0), client)
            chaos.run(random.Random(seed), SECONDS)
        log, outcomes = _read(client, f"{prefix}:log"), _read(client, f"{prefix}:outcomes")
        assert len({e["fence"] for e in log}) >= 10, f"seed {seed}: too few holders wrote"
        check_fences_never_go_back(log)
        check_each_fence_has_one_holder_writing_in_order(log)
        check_the_children_saw_what_the_log_says(log, outcomes, {k.who for k in chaos.kills})
        refusals = check_paused_holders_were_refused(log, outcomes, chaos.pauses)
        assert {r["result"] for r in refusals} == set(REFUSED), f"seed {seed}: {refusals}"
        check_killed_holders_lock_was_taken_again(log, chaos.kills, chaos.stopped_at)
        check_a_fresh_acquire_succeeds_within_a_lease(client, prefix, fair, log)
        print(f"{len(log)} writes accepted by {len({e['fence'] for e in log})} holders; "
              f"{len(chaos.pauses)} pauses ({sum(bool(p.fence) for p in chaos.pauses)} holding), "
              f"{len(refusals)} refusals after them; {len(chaos.kills)} kills "
              f"({sum(bool(k.fence) for k in chaos.kills)} holding); "
              f"{sum(o['result'] != 'accepted' for o in outcomes)} refusals in all; " +
              ", ".join(f"{phase} {s:.1f} s" for phase, s in chaos.timings.items()))
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
