"""A user's Redis is left alone: the lessons run on a private server unless REDIS_URL is set, and
where it is set they refuse to empty a queue that holds someone else's messages."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import redis

from labkit import REPO_ROOT
from labkit.guard import ForeignMessages, empty_queues

FOREIGN_MESSAGE = json.dumps({"body": "W1tdLCB7fSwge31d", "content-type": "application/json",
                              "headers": {"task": "billing.charge", "id": "42"}, "properties": {}})


def seed_foreign_data(client: redis.Redis) -> dict[bytes, bytes]:
    """A real application's data: its queue (named `celery`, like ours), a lock, a hash, a result
    of its own; returns every key's DUMP, to compare afterwards."""
    client.rpush("celery", FOREIGN_MESSAGE, "not even json")
    client.set("lock:outbox", "someone else's lock")
    client.hset("users:1", mapping={"name": "Ada"})
    client.set("celery-task-meta-42", json.dumps({"status": "SUCCESS", "result": 1}))
    return {key: client.dump(key) for key in client.scan_iter()}


def test_empty_queues_deletes_our_queues_and_refuses_to_touch_foreign_messages(fresh_db_url):
    client = redis.Redis.from_url(fresh_db_url)
    ours = json.dumps({"headers": {"task": "tasks.add", "id": "1"}, "body": ""})
    client.rpush("extract", ours)
    client.rpush("celery", ours, FOREIGN_MESSAGE)
    with pytest.raises(ForeignMessages, match="'celery' .* holds messages that are not this "
                                              "repository's tasks: left untouched"):
        empty_queues(client, ["extract", "celery"])
    assert client.llen("extract") == 1 and client.llen("celery") == 2   # all or nothing
    client.lrem("celery", 0, FOREIGN_MESSAGE)
    empty_queues(client, ["extract", "celery", "never-made"])
    assert client.exists("extract", "celery") == 0
    client.close()


def test_with_redis_url_set_notebook_01_refuses_to_empty_a_queue_of_foreign_messages(
        fresh_db_url, run_notebook):
    import nbclient.exceptions

    client = redis.Redis.from_url(fresh_db_url)
    before = seed_foreign_data(client)
    with pytest.raises(nbclient.exceptions.CellExecutionError,
                       match="the queue 'celery' on the Redis at .* holds messages that are not "
                             "this repository's tasks"):
        run_notebook("01_producer_worker.ipynb")   # REDIS_URL: that database
    assert {key: client.dump(key) for key in before} == before
    client.close()


# Runs inside a network namespace of its own, where 127.0.0.1:6379 is a Redis this test starts:
# the default port a lesson would find on a user's laptop.
IN_A_FRESH_NAMESPACE = r"""
import json, os, subprocess, sys, tempfile
import nbclient, nbformat, redis
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests"))
from test_01_user_data import seed_foreign_data
from labkit import RedisServer

with RedisServer(port=6379) as users_redis:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    before = seed_foreign_data(client)
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    runs = {
        "demo": [sys.executable, "-m", "labkit.demo"],
        "figures 01": [sys.executable, "scripts/figures.py", "01", "--out", tempfile.mkdtemp()],
    }
    codes = {name: subprocess.run(command, cwd=os.environ["REPO"], env=env, timeout=150,
                                  capture_output=True).returncode
             for name, command in runs.items()}
    os.environ.pop("REDIS_URL", None)
    path = os.path.join(os.environ["REPO"], "notebooks", "01_producer_worker.ipynb")
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    codes["notebook 01"] = 0
    changed = sorted(key.decode() for key in set(before) | set(client.scan_iter())
                     if client.dump(key) != before.get(key))
    print(json.dumps({"codes": codes, "changed": changed}))
"""


@pytest.mark.timeout(300)
@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare")
                         and shutil.which("ip")),
                    reason="needs root, unshare and ip to run a Redis of its own on port 6379")
def test_with_redis_url_unset_the_demo_a_notebook_and_figures_leave_the_default_redis_alone():
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {sys.executable} -"],
        input=IN_A_FRESH_NAMESPACE, cwd=REPO_ROOT, capture_output=True, text=True, timeout=280,
        env={**os.environ, "REPO": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["codes"] == {"demo": 0, "figures 01": 0, "notebook 01": 0}
    assert report["changed"] == []   # every foreign key, and the foreign `celery` list, as it was
