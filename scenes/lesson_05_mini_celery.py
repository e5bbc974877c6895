"""Mini Celery: a task queue in a few dozen lines of redis-py, after the seed's "Mini Celery".

Hand-written to show the mechanism; Celery does this for you (lesson 05a shows what it does
instead). It imports nothing but redis-py, so you can read it, and run it, on its own.

Usage (each line in its own terminal, from the repository root, a Redis at REDIS_URL)::

    (terminal 1)$ python -m scenes.lesson_05_mini_celery client --name client1
    (terminal 2)$ python -m scenes.lesson_05_mini_celery client --name client2
    (terminal 3)$ python -m scenes.lesson_05_mini_celery submit world --in 2       # prints its id
    (terminal 3)$ python -m scenes.lesson_05_mini_celery submit hello --after ID   # hello(world())
    (terminal 3)$ python -m scenes.lesson_05_mini_celery result ID2
    {"value": "Hello World!", "client": "client1", "started": ..., "ended": ...}

The design (the seed's, with the sorted set its author wished for):

- tasks are found **by name** in `TASKS`: a message carries a name and JSON arguments;
- `mini:due` is a **sorted set**: task id → the Unix time it is due. A client claims the first
  due member (ZRANGEBYSCORE + ZREM in one script, so one client gets it) and runs it;
- results are stored **by id**, `mini:result:<id>`;
- **dependencies are counted down**: a child waits in `mini:task:<id>` with `waiting` = its
  unfinished parents; each parent's finish decrements it, and the one that reaches 0 puts the
  child in `mini:due`. The child gets its parents' results as extra arguments — or, as in the
  seed, a parent's exception (as text), and runs anyway.

What it does not do, on purpose (the seed author's own list; notebook 05a answers each with what
Celery does): finished tasks and results are never deleted; clients poll `mini:due` (every
`POLL_SECONDS`) instead of being handed work; a client that dies mid-task loses it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid

import redis

POLL_SECONDS = 0.05   # how often an idle client looks at mini:due
DUE = "mini:due"

# KEYS[1] mini:due
# ARGV[1] task id, ARGV[2] task name, ARGV[3] args JSON, ARGV[4] due time, ARGV[5..] parent ids
# returns the number of parents still unfinished (0: the task is due at ARGV[4])
SUBMIT = """
local id, waiting = ARGV[1], 0
for i = 5, #ARGV do
  if redis.call('EXISTS', 'mini:result:' .. ARGV[i]) == 0 then
    redis.call('SADD', 'mini:children:' .. ARGV[i], id)
    waiting = waiting + 1
  end
end
redis.call('HSET', 'mini:task:' .. id, 'name', ARGV[2], 'args', ARGV[3], 'due', ARGV[4],
           'parents', cjson.encode({unpack(ARGV, 5)}), 'waiting', waiting)
if waiting == 0 then redis.call('ZADD', KEYS[1], ARGV[4], id) end
return waiting
"""

# KEYS[1] mini:due
# ARGV[1] now
# returns the id of a task due by now, taken out of the set (no other client gets it), or false
CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZREM', KEYS[1], due[1])
return due[1]
"""

# KEYS[1] mini:due
# ARGV[1] task id, ARGV[2] result JSON, ARGV[3] now
# stores the result; each child whose last parent this was becomes due (now, or its own time)
FINISH = """
redis.call('SET', 'mini:result:' .. ARGV[1], ARGV[2])
for _, child in ipairs(redis.call('SMEMBERS', 'mini:children:' .. ARGV[1])) do
  local key = 'mini:task:' .. child
  if redis.call('HINCRBY', key, 'waiting', -1) == 0 then
    local due = math.max(tonumber(redis.call('HGET', key, 'due')), tonumber(ARGV[3]))
    redis.call('ZADD', KEYS[1], due, child)
  end
end
"""

TASKS = {}   # name -> function: what a client can run


def task(function):
    TASKS[function.__name__] = function
    return function


@task
def world():
    return "World"


@task
def hello(thing):
    return f"Hello {thing}!"


@task
def square(x):
    return x * x


@task
def add(*numbers):
    return sum(numbers)


@task
def divide(x, y):
    return x / y


def connect(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(url or os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
                                decode_responses=True)


def submit(db: redis.Redis, name: str, *args, at: float | None = None, after=()) -> str:
    """Schedule task `name`: due at `at` (Unix time; default now), and after the `after` ids."""
    task_id = uuid.uuid4().hex[:12]
    db.eval(SUBMIT, 1, DUE, task_id, name, json.dumps(args), repr(at or time.time()), *after)
    return task_id


def result(db: redis.Redis, task_id: str) -> dict | None:
    stored = db.get(f"mini:result:{task_id}")
    return json.loads(stored) if stored else None


def run_one(db: redis.Redis, task_id: str, client: str) -> None:
    """Run a claimed task with its own arguments plus its parents' results; store the outcome."""
    stored = db.hgetall(f"mini:task:{task_id}")
    parents = [result(db, parent) for parent in json.loads(stored["parents"])]
    args = json.loads(stored["args"]) + [p.get("value", p.get("error")) for p in parents]
    outcome = {"name": stored["name"], "due": float(stored["due"]), "client": client,
               "started": time.time()}
    try:
        outcome["value"] = TASKS[stored["name"]](*args)
    except Exception as error:   # the seed's way: the error becomes the children's argument
        outcome["error"] = f"{type(error).__name__}({str(error)!r})"
    outcome["ended"] = time.time()
    db.eval(FINISH, 1, DUE, task_id, json.dumps(outcome), repr(time.time()))


def run_client(db: redis.Redis, name: str, stop=lambda: False) -> int:
    """Claim and run due tasks until `stop()`; return how many times it looked at mini:due."""
    looks = 0
    while not stop():
        looks += 1
        task_id = db.eval(CLAIM, 1, DUE, repr(time.time()))
        if task_id:
            run_one(db, task_id, name)
            print(f"{name} ran {task_id}", flush=True)
            continue
        # Nothing due: sleep until the soonest task, but look again soon, since a new one may
        # come (the seed listened on pub/sub instead; Celery's workers block on the queue).
        soonest = db.zrange(DUE, 0, 0, withscores=True)
        wait = soonest[0][1] - time.time() if soonest else POLL_SECONDS
        time.sleep(min(max(wait, 0.0), POLL_SECONDS))
    return looks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenes.lesson_05_mini_celery",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="the Redis (default: REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    client = sub.add_parser("client", help="run due tasks until SIGTERM or Ctrl-C")
    client.add_argument("--name", default=f"client-{os.getpid()}")
    send = sub.add_parser("submit", help="schedule a task; prints its id")
    send.add_argument("name", choices=sorted(TASKS))
    send.add_argument("args", nargs="*", type=json.loads, help="JSON values, e.g. 3 or '\"x\"'")
    send.add_argument("--in", dest="delay", type=float, default=0.0, help="due in this many s")
    send.add_argument("--after", nargs="+", default=[], metavar="ID", help="parent task ids")
    show = sub.add_parser("result", help="print a task's stored outcome")
    show.add_argument("id")
    options = parser.parse_args(argv)
    db = connect(options.url)
    if options.command == "submit":
        print(submit(db, options.name, *options.args, at=time.time() + options.delay,
                     after=options.after))
    elif options.command == "result":
        print(json.dumps(result(db, options.id)))
    else:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        print(f"{options.name} ready", flush=True)
        try:
            looks = run_client(db, options.name, stop=lambda: bool(stopping))
        except KeyboardInterrupt:
            return 130
        print(f"{options.name} stopped: looked at {DUE} {looks} times", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
