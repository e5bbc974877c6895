"""The broker closed to strangers: a Redis with ACL users, the worker and the invoker logging in as
their own users, and everyone else refused (README, "Security").

Whoever can write to the broker decides what the workers run — and one malformed message stops
a worker (kombu's Redis transport). So the broker gets users: a worker user, and a producer user
that may push tasks and read results but not take tasks off a queue, read other keys or wipe
the server. The rules below are README's, word for word (a test checks it).
"""
from __future__ import annotations

import secrets

import pytest
import redis

from labkit import REPO_ROOT, RedisServer, Worker

# The producer: send a task (declare the queue: LLEN, SADD its binding; LPUSH the message, in
# MULTI/EXEC) and wait for its result (SUBSCRIBE to it, GET it). Nothing else.
PRODUCER_RULES = ("resetkeys resetchannels -@all +@connection +multi +exec +llen +sadd +lpush "
                  "+get +subscribe +unsubscribe ~celery* ~_kombu.binding* &celery-task-meta-*")
# The worker: everything a worker does (consume, acknowledge, store results, events, the
# lessons' data), but none of the commands that reconfigure or wipe the server.
WORKER_RULES = "~* &* +@all -@dangerous"


def acl_config(passwords: dict[str, str]) -> list[str]:
    """redis-server arguments: no default user; admin (for this test), worker, producer."""
    return ["--user", "default", "off",
            "--user", "admin", "on", f">{passwords['admin']}", "~*", "&*", "+@all",
            "--user", "worker", "on", f">{passwords['worker']}", *WORKER_RULES.split(),
            "--user", "producer", "on", f">{passwords['producer']}", *PRODUCER_RULES.split()]


@pytest.fixture(scope="module")
def server():
    passwords = {user: secrets.token_urlsafe(12) for user in ("admin", "worker", "producer")}
    with RedisServer(config=acl_config(passwords), user="admin",
                     password=passwords["admin"]) as started:
        port = started.url.rsplit(":", 1)[1].split("/")[0]
        started.url_for = lambda user: (f"redis://{user}:{passwords[user]}@127.0.0.1:{port}/0"
                                        if user else f"redis://127.0.0.1:{port}/0")
        yield started


@pytest.fixture(scope="module")
def acl_worker(server, tmp_path_factory):
    worker = Worker("aclworker", env={"REDIS_URL": server.url_for("worker")},
                    log_dir=tmp_path_factory.mktemp("acl-worker-log"))
    with worker:
        yield worker


def test_the_worker_and_the_invoker_log_in_as_their_users_and_a_task_runs(
        server, acl_worker, run_invoker):
    done = run_invoker("add", 2, 3, env={"REDIS_URL": server.url_for("producer")})
    assert (done.returncode, done.stdout.strip()) == (0, "5"), done.stderr
    clients = redis.Redis.from_url(server.url, decode_responses=True).client_list()
    assert {client["user"] for client in clients} >= {"worker", "admin"}   # no "default"


@pytest.mark.parametrize("who, says", [
    (None, "needs a password — put it in the URL"),
    ("wrong", "refused the user name or password"),
])
def test_a_client_without_the_password_is_refused_in_one_line(server, run_invoker, who, says):
    url = server.url_for(None)
    if who == "wrong":
        url = url.replace("redis://", "redis://producer:not-the-password@")
    done = run_invoker("add", 2, 3, env={"REDIS_URL": url})
    assert done.returncode == 3 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "not-the-password" not in done.stderr
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(server.url_for(None)).ping()


@pytest.mark.parametrize("command", [
    ("BRPOP", "celery", "1"),          # take a task off the queue
    ("LRANGE", "celery", "0", "-1"),   # read what others send
    ("DEL", "celery"),                 # drop the queue
    ("FLUSHALL",),                     # wipe the server
    ("GET", "outbox:1"),               # another key
    ("CONFIG", "SET", "requirepass", ""),
])
def test_the_producer_may_not_take_read_or_wipe(server, command):
    producer = redis.Redis.from_url(server.url_for("producer"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        producer.execute_command(*command)
    producer.close()


def test_the_worker_may_not_wipe_or_reconfigure_the_server(server):
    worker = redis.Redis.from_url(server.url_for("worker"))
    for command in (("FLUSHALL",), ("CONFIG", "SET", "requirepass", ""), ("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.execute_command(*command)
    worker.close()


def test_a_command_the_user_may_not_run_ends_in_one_line_naming_the_acl(server, run_invoker):
    # `mail` also fills the lesson's outbox, which the producer user may not touch
    done = run_invoker("mail", "--count", 2, env={"REDIS_URL": server.url_for("producer")})
    assert done.returncode == 3, done.stderr
    assert "may not do this" in done.stderr and "ACL" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_readme_gives_these_rules_word_for_word():
    readme = (REPO_ROOT / "README.md").read_text()
    assert PRODUCER_RULES in readme and WORKER_RULES in readme
