"""A producer for a Redis of the scene's choosing (a test's own database), with tasks.py's settings.

    >>> app = producer_for(url)          # tasks.app itself when url is None
    >>> app.send_task("tasks.add", [2, 3]).get(timeout=10)

Scenes that start their own workers on a test's database send to them through it: the same
serializers, routes and timeouts as `tasks.app`, another broker and result backend.
"""
from __future__ import annotations

from celery import Celery

import tasks

PRODUCER_SETTINGS = ("task_serializer", "result_serializer", "accept_content",
                     "result_accept_content", "result_extended", "task_routes",
                     "broker_connection_timeout", "task_publish_retry_policy",
                     "redis_socket_connect_timeout")


def producer_for(url: str | None) -> Celery:
    """tasks.app, or a producer with its settings (serializers, routes) for the Redis at `url`."""
    if url is None:
        return tasks.app
    app = Celery("tasks", set_as_current=False)
    app.conf.update({key: tasks.app.conf[key] for key in PRODUCER_SETTINGS},
                    broker_url=url, result_backend=url)
    return app
