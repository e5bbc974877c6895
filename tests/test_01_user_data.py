"""A user's Redis is left alone: the lessons run on a private server unless REDIS_URL is set, and
where it is set they refuse to empty a queue that holds someone else's messages."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import redis

from labkit import REPO_ROOT
from labkit.guard import ForeignMessages, empty_queues
from users_redis import (CAN_RUN, FOREIGN_MESSAGE, WHY_NOT, run_beside_a_users_redis,
                         seed_foreign_data)


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
        run_notebook("01_producer_worker.ipynb", redis_url=fresh_db_url)
    assert {key: client.dump(key) for key in before} == before
    client.close()


def lessons_with_figures() -> list[str]:
    spec = importlib.util.spec_from_file_location("figures_script", REPO_ROOT / "scripts/figures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return sorted(script.lessons_with_figures())


@pytest.mark.timeout(300)
@pytest.mark.skipif(not CAN_RUN, reason=WHY_NOT)
def test_with_redis_url_unset_the_demo_leaves_a_users_redis_on_the_default_port_alone():
    report = run_beside_a_users_redis({"demo": [sys.executable, "-m", "labkit.demo"]})
    assert report["codes"] == {"demo": 0}, "\n".join(report["errors"].values())
    assert report["changed"] == []   # every foreign key, and the foreign `celery` list, as it was


# Every notebook runs beside a user's Redis too: the `run_notebook` fixture (conftest.py), in each
# lesson's notebook test.

@pytest.mark.timeout(300)
@pytest.mark.parametrize("lesson", lessons_with_figures())
def test_the_figure_script_draws_every_figure_of_the_lesson_and_leaves_a_users_redis_alone(
        lesson, tmp_path):
    command = [sys.executable, "scripts/figures.py", lesson, "--out", str(tmp_path)]
    if CAN_RUN:
        report = run_beside_a_users_redis({"figures": command}, timeout=200)
        assert report["codes"] == {"figures": 0}, "\n".join(report["errors"].values())
        assert report["changed"] == []
        printed = report["outputs"]["figures"]
    else:   # no namespace here: the figures at least, without the check of a user's Redis
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=200)
        assert done.returncode == 0, done.stderr[-3000:]
        printed = done.stdout
    committed = sorted(path.name for path in (REPO_ROOT / "img").glob(f"{lesson}_*.png"))
    drawn = sorted(path.name for path in tmp_path.glob("*.png"))
    assert drawn == committed   # every committed figure of the lesson comes from this script
    for name in drawn:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    if lesson == "01":   # workers of one process each: the 15 jobs split over the three
        assert "jobs per worker: {'worker" in printed


@pytest.mark.skipif(not CAN_RUN, reason=WHY_NOT)
def test_the_check_of_a_users_redis_sees_a_key_changed():   # a test must be able to fail
    report = run_beside_a_users_redis({"careless": [
        sys.executable, "-c", "import redis; redis.Redis(port=6379).hset('users:1', 'name', 'Bob')"]})
    assert report["codes"] == {"careless": 0} and report["changed"] == ["users:1"]
