"""RabbitMQ for the broker comparison (lesson 07): does one answer, and queues of our own on it.

Usage::

    >>> from labkit.amqp import amqp_problem, own_queue
    >>> amqp_problem("amqp://guest:guest@localhost:5672//")     # None when it answers, else why
    >>> with own_queue("amqp://guest:guest@localhost:5672//") as queue:   # "learn-celery-07-1a2b…"
    ...     ...   # workers consume `queue`, producers send to it
    # on leaving: that queue and the exchange of the same name are deleted, nothing else

A RabbitMQ is often shared (the guest user on vhost "/" may not create a vhost). So every name we
declare starts with `learn-celery-07-` and a random part, and only those names are deleted after.
Workers that use it should run without remote control, gossip, mingle and heartbeat, which would
declare Celery's shared `celery.pidbox` and `celeryev` exchanges.
"""
from __future__ import annotations

import contextlib
import socket
import uuid

import amqp.exceptions
import kombu

from labkit.settings import redacted

QUEUE_PREFIX = "learn-celery-07-"
DEFAULT_URL = "amqp://guest:guest@localhost:5672//"


def amqp_problem(url: str, timeout: float = 3.0) -> str | None:
    """None if a RabbitMQ at `url` lets us in; else one phrase: what is wrong, what to do."""
    shown = redacted(url)
    connection = kombu.Connection(url, connect_timeout=timeout, transport_options={
        "max_retries": 0})
    try:
        connection.ensure_connection(max_retries=1, timeout=timeout)
        return None
    except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed) as error:
        return (f"the RabbitMQ at {shown} refused the user, password or vhost ({error}) — check "
                "them in the URL (amqp://USER:PASSWORD@host:port/vhost)")
    except (OSError, socket.timeout, amqp.exceptions.AMQPError,
            kombu.exceptions.OperationalError) as error:
        return (f"no RabbitMQ answers at {shown} ({type(error).__name__}) — start one "
                "(Debian: apt-get install rabbitmq-server; macOS: brew install rabbitmq), "
                "or point the URL at yours")
    finally:
        connection.release()


@contextlib.contextmanager
def own_queue(url: str, label: str = ""):
    """A queue name of our own on the RabbitMQ at `url`; it and its exchange deleted after."""
    name = f"{QUEUE_PREFIX}{label + '-' if label else ''}{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        delete_own(url, [name])


def delete_own(url: str, names: list[str]) -> None:
    """Delete the queues and exchanges called `names` (ours only: the prefix is checked)."""
    for name in names:
        if not name.startswith(QUEUE_PREFIX):
            raise ValueError(f"{name!r} is not ours to delete (not {QUEUE_PREFIX}…)")
    with kombu.Connection(url, connect_timeout=3) as connection:
        for name in names:
            for delete in ("queue_delete", "exchange_delete"):
                channel = connection.channel()   # a failed delete closes its channel
                try:
                    getattr(channel, delete)(name)
                except amqp.exceptions.NotFound:
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
