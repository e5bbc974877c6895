"""What lesson 05a's tasks stand on: a log of failures that link_error callbacks write, and a
flaky service for the retry demos.

    log_failure(client, task_id, "tasks.xsum", error)     # an errback's one Redis write
    failures_logged(client)                               # [{"task_id", "task", "error"}, ...]
    answer_after(attempt, failures)                       # ConnectionError until attempt > failures

Nothing here knows the Celery app: a task passes its own request's values in.
"""
from __future__ import annotations

import json

FAILURES_KEY = "lesson05:failures"   # a Redis list, newest last
KEEP_SECONDS = 3600                  # as long as results are kept (tasks.py: result_expires)


def log_failure(client, task_id: str | None, task_name: str | None, error: BaseException) -> None:
    """Append one failure to FAILURES_KEY, in one round trip; the list expires an hour later."""
    entry = json.dumps({"task_id": task_id, "task": task_name,
                        "error": f"{type(error).__name__}: {error}"})
    client.pipeline().rpush(FAILURES_KEY, entry).expire(FAILURES_KEY, KEEP_SECONDS).execute()


def failures_logged(client) -> list[dict]:
    return [json.loads(entry) for entry in client.lrange(FAILURES_KEY, 0, -1)]


def answer_after(attempt: int, failures: int, worker: str | None) -> dict:
    """A service that does not answer the first `failures` attempts (1, 2, …), then does.

    ConnectionError is a built-in exception: a producer reads it back from the result backend
    as itself, whatever it imports.
    """
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt}: the service did not answer")
    return {"attempts": attempt, "worker": worker}
