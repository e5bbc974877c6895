"""Flower, the monitor the talk names: started for real against the test Redis, asked over HTTP.

Flower builds its picture from the workers' events, so each test starts workers with `-E` on a
database of its own (Flower would switch events on in the session's shared workers too).
"""
import subprocess
import urllib.error

import pytest

from conftest import wait_until
from labkit import Fleet, REPO_ROOT
from labkit.flower import Flower


@pytest.fixture
def watched_fleet(fresh_db_url, monkeypatch, tmp_path):
    """Two workers sending task events, and Flower listening to them, on a database of its own."""
    monkeypatch.setenv("REDIS_URL", fresh_db_url)   # workers, Flower and `tasks` below use it
    fleet = Fleet(["flower-w1", "flower-w2"], concurrency=1, extra_args=["-E"], log_dir=tmp_path)
    flower = Flower(log_dir=tmp_path)
    try:
        for process in (*fleet.workers, flower):
            process.start()
        for process in (*fleet.workers, flower):
            process.wait_ready(60)
        flower.wait_until_listening(fleet.names, timeout=60)
        yield fleet, flower
    finally:
        flower.stop()
        fleet.stop()


@pytest.mark.timeout(180)
def test_flower_lists_the_running_workers_and_a_task_that_just_ran(watched_fleet, fresh_db_url):
    fleet, flower = watched_fleet
    assert set(flower.workers()) == set(fleet.names)
    assert flower.online() == {name: True for name in fleet.names}

    app = _app_on(fresh_db_url)
    result = app.send_task("tasks.add", (2, 3))
    assert result.get(timeout=30) == 5
    seen = flower.wait_for(lambda f: f.task(result.id).get("state") == "SUCCESS" and f.task(result.id),
                           timeout=30)
    assert seen["name"] == "tasks.add" and seen["result"] == "5" and seen["worker"] in fleet.names
    assert result.id in flower.tasks()


@pytest.mark.timeout(180)
def test_flower_shows_progress_because_the_task_sends_an_event_not_because_of_update_state(
        watched_fleet, fresh_db_url):
    """Lesson 04, section 5c, in Flower itself: PROGRESS appears between STARTED and SUCCESS
    only for a task that sends `task-progress` events; update_state alone never reaches it."""
    fleet, flower = watched_fleet
    app = _app_on(fresh_db_url)
    states = {}
    for name, kwargs in (("events", {}), ("no events", {"report": False})):
        # A task of many rounds: Flower is polled every 20 ms while it runs for a second or more.
        result = app.send_task("tasks.fft_random", (60_000,), kwargs)
        states[name] = _states_flower_shows(flower, result)
    assert states["events"][-2:] == ["PROGRESS", "SUCCESS"], states
    assert "PROGRESS" not in states["no events"] and states["no events"][-1] == "SUCCESS", states


def test_flower_refuses_its_api_without_the_unauthenticated_switch(tmp_path, fresh_db_url):
    """Flower 2 answers /api/ only with a login, or with FLOWER_UNAUTHENTICATED_API set (as
    labkit.flower does on loopback): the Procfile's Flower serves its pages, not its API."""
    flower = Flower(env={"FLOWER_UNAUTHENTICATED_API": "", "REDIS_URL": fresh_db_url},
                    log_dir=tmp_path)
    flower.start()
    try:
        super(Flower, flower).wait_ready(60)
        assert wait_until(lambda: _status_of(flower, "/api/workers") is not None, timeout=30)
        assert _status_of(flower, "/api/workers") == 401
    finally:
        flower.stop()


def test_the_procfile_starts_flower_on_a_configurable_port():
    procfile = (REPO_ROOT / "Procfile").read_text()
    line = next(line for line in procfile.splitlines() if line.startswith("flower:"))
    assert "celery -A tasks flower" in line and "${FLOWER_PORT:-5555}" in line
    assert "--address=127.0.0.1" in line   # never on every interface: Flower can stop workers
    shown = subprocess.run(["sh", "-c", "FLOWER_PORT=5601; echo " + line.split(":", 1)[1]],
                           capture_output=True, text=True, timeout=10).stdout
    assert "--port=5601" in shown


def _app_on(url):
    """A producer-side Celery app on `url`, sending by task name (as `tasks` would)."""
    from celery import Celery

    return Celery("producer", broker=url, backend=url, set_as_current=False)


def _states_flower_shows(flower, result, timeout=60.0):
    """The distinct states Flower reports for `result` until SUCCESS, in order."""
    states = []

    def look(f):
        state = f.task(result.id).get("state")
        if state and (not states or states[-1] != state):
            states.append(state)
        return state == "SUCCESS"
    flower.wait_for(look, timeout=timeout, every=0.02)
    return states


def _status_of(flower, path):
    try:
        flower.get(path)
        return 200
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None
