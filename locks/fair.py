"""`Lock(..., fair=True)`: waiters queue up and the releaser hands the lock to the first of them.

A blocked waiter polls no more: it joins a queue (a list of tokens next to the lock) and blocks
in BLPOP on a wake list of its own. The release script deletes the lock and, in the same step,
gives it to the first waiter still alive — sets the lock to that waiter's token, issues its fence
and pushes the fence onto its wake list. So:

- a waiter learns of the release in one round trip, not after up to `sleep` seconds;
- waiters are served in arrival order, and nobody can take the lock between a release and the
  handoff (the lock is never free while a live waiter queues): no waiter starves;
- no wake-up is lost: joining the queue and trying the lock are one script, so a release just
  before a waiter starts listening either found it queued (and handed over) or left the lock free
  (and the waiter takes it);
- a waiter that dies or gives up is skipped: it renews a `waiting` key every `sleep` seconds
  (the BLPOP timeout, the polling fallback), and a handoff goes only to a waiter whose key lives.
  One killed less than 3 × `sleep` (at least 0.5 s) before a release may still be handed the
  lock; it is then free when that lease ends, as after a holder's crash. Hence a fair lock needs
  a timeout (`Lock` refuses `fair=True` without one).

The keys the scripts name from the lock's name (`<name>:waiters`, `<name>:waiting:<token>`,
`<name>:wake:<token>`) are not declared as KEYS: one Redis, not Cluster. The release is a script
on every server (no DELEX): on Redis ≥ 8.4 an uncontended cycle costs a little more, hence opt-in.
"""
from __future__ import annotations

import time

# KEYS[1] lock name, KEYS[2] fence counter, KEYS[3] waiters' queue (a list of tokens)
# ARGV[1] token, ARGV[2] ttl in ms ("0": no expiry), ARGV[3] how long a queued waiter counts as
#   alive without renewing its place, in ms
# returns the new fence when the lock was free (now taken), else 0 (queued, its place renewed)
ACQUIRE_OR_QUEUE = """
    local waiting = KEYS[1] .. ':waiting:' .. ARGV[1]
    if redis.call('exists', KEYS[1]) == 0 then
        local fence = redis.call('incr', KEYS[2])
        if ARGV[2] == '0' then
            redis.call('set', KEYS[1], ARGV[1])
        else
            redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
        end
        if redis.call('del', waiting) == 1 then
            redis.call('lrem', KEYS[3], 0, ARGV[1])
        end
        return fence
    end
    if redis.call('exists', waiting) == 0 then
        redis.call('rpush', KEYS[3], ARGV[1])
    end
    redis.call('set', waiting, ARGV[2], 'PX', ARGV[3])
    return 0
"""

# KEYS[1] lock name, KEYS[2] fence counter, KEYS[3] waiters' queue
# ARGV[1] token
# returns 1 when released (and handed to the first live waiter, if any), 0 when not held with
#   this token (nothing is changed)
RELEASE_AND_HAND_OVER = """
    if redis.call('get', KEYS[1]) ~= ARGV[1] then
        return 0
    end
    redis.call('del', KEYS[1])
    while true do
        local next = redis.call('lpop', KEYS[3])
        if not next then
            return 1
        end
        local waiting = KEYS[1] .. ':waiting:' .. next
        local ttl = redis.call('get', waiting)
        if ttl then
            redis.call('del', waiting)
            local fence = redis.call('incr', KEYS[2])
            if ttl == '0' then
                redis.call('set', KEYS[1], next)
            else
                redis.call('set', KEYS[1], next, 'PX', ttl)
            end
            local wake = KEYS[1] .. ':wake:' .. next
            redis.call('rpush', wake, fence)
            redis.call('pexpire', wake, 60000)
            return 1
        end
    end
"""

# KEYS[1] lock name, KEYS[2] waiters' queue
# ARGV[1] token
# returns the fence when the lock was handed to this waiter meanwhile (it holds it), else 0
LEAVE_QUEUE = """
    redis.call('del', KEYS[1] .. ':waiting:' .. ARGV[1])
    redis.call('lrem', KEYS[2], 0, ARGV[1])
    return tonumber(redis.call('lpop', KEYS[1] .. ':wake:' .. ARGV[1]) or '0')
"""


def queue_key(name: str) -> str:
    return f"{name}:waiters"


def wait_in_turn(lock, token, ttl_ms: int, sleep: float, stop_trying_at):
    """Queue for `lock` until it is handed over or taken: (fence, a time before the lease
    began), or None once `stop_trying_at` (time.monotonic()) has passed."""
    alive_ms = int(max(3 * sleep, 0.5) * 1000)  # a few missed renewals before it is skipped
    keys = (lock.name, lock.fence_counter_key, queue_key(lock.name))
    wake = f"{lock.name}:wake:{token.decode() if isinstance(token, bytes) else token}"
    while True:
        checked_at = time.monotonic()  # the lock was not ours yet when this script ran
        fence = lock._run(lock.lua_acquire_or_queue, 3, *keys, token, ttl_ms, alive_ms)
        if fence:
            return int(fence), checked_at
        wait = sleep
        if stop_trying_at is not None:
            wait = min(wait, stop_trying_at - time.monotonic())
            if wait <= 0:
                fence = lock._run(lock.lua_leave_queue, 2, lock.name, keys[2], token)
                return (int(fence), checked_at) if fence else None
        handed = lock.redis.blpop([wake], timeout=max(wait, 0.001))
        if handed:
            return int(handed[1]), checked_at
