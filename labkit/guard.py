"""Emptying the lessons' queues without ever deleting someone else's messages.

Usage (a notebook or a scene starting from an empty queue)::

    empty_queues(client, ["celery", "extract"], task_prefix="tasks.")

The lessons run on a private Redis unless REDIS_URL says otherwise; when it does, the `celery`
list there may hold a real application's messages. A queue is emptied only if every message in
it is a task of ours (its `task` header starts with `task_prefix`); otherwise nothing is deleted
and `ForeignMessages` says, in one line, what to do. Check and delete are one Lua script, so a
message pushed in between is never lost.
"""
from __future__ import annotations

import redis


class ForeignMessages(RuntimeError):
    """A queue holds messages that are not the lessons' tasks: it is left as it is."""


# KEYS the queues (Redis lists) to empty
# ARGV[1] the task-name prefix of our tasks, e.g. "tasks."
# returns 0 after deleting every key, or the (1-based) position in KEYS of the first queue that
# holds a message that is not ours (then nothing is deleted)
EMPTY_IF_OURS = """
for index, key in ipairs(KEYS) do
    if redis.call('TYPE', key).ok ~= 'none' then
        if redis.call('TYPE', key).ok ~= 'list' then return index end
        for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do
            local ok, message = pcall(cjson.decode, raw)
            local task = ok and type(message) == 'table' and type(message.headers) == 'table'
                and message.headers.task
            if type(task) ~= 'string' or string.sub(task, 1, #ARGV[1]) ~= ARGV[1] then
                return index
            end
        end
    end
end
if #KEYS > 0 then redis.call('DEL', unpack(KEYS)) end
return 0
"""


def empty_queues(client: redis.Redis, queues, task_prefix: str = "tasks.") -> None:
    """Delete the `queues` if they hold only our tasks' messages; else ForeignMessages."""
    queues = list(queues)
    foreign = client.eval(EMPTY_IF_OURS, len(queues), *queues, task_prefix)
    if foreign:
        queue = queues[int(foreign) - 1]
        where = client.connection_pool.connection_kwargs
        raise ForeignMessages(
            f"the queue {queue!r} on the Redis at {where.get('host')}:{where.get('port')} "
            f"db {where.get('db', 0)} holds messages that are not this repository's tasks: left "
            "untouched — unset REDIS_URL to run the lessons on a private Redis, or point it at "
            "an empty database")
