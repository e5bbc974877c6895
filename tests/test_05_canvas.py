"""Lesson 05a: Celery's canvas on the session's real workers — chain, group, chord, chunks,
immutable signatures; a failing member's effect on a chain, a chord and its link_error; and
what Celery keeps in Redis instead of Mini Celery's keys."""
from celery import chain, chord, group
from celery.exceptions import ChordError

import tasks
from conftest import wait_until
from scenes.lesson_05_canvas import chain_links, failing_chain, failing_chord, run_chord

WAIT = 30


def test_hello_world_is_a_chain(workers):
    assert (tasks.world.s() | tasks.hello.s())().get(timeout=WAIT) == "Hello World!"


def test_a_chain_passes_each_result_to_the_next_link(workers):
    result = chain(tasks.divide.s(100, 5), tasks.divide.s(2), tasks.mul.s(3))()
    assert result.get(timeout=WAIT) == 30.0
    assert [link["result"] for link in chain_links(result)] == [20.0, 10.0, 30.0]


def test_an_immutable_signature_ignores_the_result_before_it(workers):
    assert (tasks.world.s() | tasks.hello.si("Celery"))().get(timeout=WAIT) == "Hello Celery!"


def test_a_group_returns_its_results_in_order(workers):
    assert group(tasks.square.s(x) for x in range(5))().get(timeout=WAIT) == [0, 1, 4, 9, 16]


def test_a_chord_body_gets_every_part_once_the_slowest_is_in(workers):
    report = run_chord(seconds=(0.2, 0.6, 0.4))
    assert report["value"] == 1 + 4 + 9
    parts = [run for run in report["runs"] if run.task == "tasks.square"]
    body = next(run for run in report["runs"] if run.task == "tasks.xsum")
    assert len(parts) == 3 and body.start >= max(run.end for run in parts) - 0.05


def test_chunks_split_the_calls_into_few_messages(workers):
    result = tasks.mul.chunks(zip(range(10), range(10)), 4)()
    assert result.get(timeout=WAIT) == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]


def test_a_failing_link_stops_the_chain_and_calls_its_link_error(workers):
    report = failing_chain()
    states = [link["state"] for link in report["links"]]
    assert states == ["SUCCESS", "FAILURE", "FAILURE"]
    assert report["links"][2]["worker"] is None                 # marked failed, never ran
    assert isinstance(report["links"][2]["result"], ZeroDivisionError)
    assert [entry["task_id"] for entry in report["failures"]] == [report["links"][1]["id"]]


def test_a_failing_part_gives_the_chord_body_chord_error_and_its_link_error_hears(workers):
    report = failing_chord()
    assert report["state"] == "FAILURE" and isinstance(report["error"], ChordError)
    assert "ZeroDivisionError" in str(report["error"])
    assert [state for _, state in report["parts"]] == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert [entry["task"] for entry in report["failures"]] == ["tasks.xsum"]
    assert report["failures"][0]["error"].startswith("ChordError: Dependency")


def test_a_chord_is_counted_in_the_result_backend_while_it_runs(workers):
    result = chord(tasks.square.s(x, 0.3 * x) for x in (1, 2, 3))(tasks.xsum.s())
    group_id = result.parent.id
    db = tasks.db()
    joined = f"celery-taskset-meta-{group_id}.j"
    assert wait_until(lambda: db.zcard(joined) >= 1, WAIT)
    assert db.get(f"celery-taskset-meta-{group_id}.s") == "3"   # the size the parts count to
    assert result.get(timeout=WAIT) == 14
    assert wait_until(lambda: not db.exists(joined), 10)        # cleaned up once the body is sent


def test_an_eta_task_waits_in_a_worker_not_in_the_queue(workers):
    db = tasks.db()
    result = tasks.add.apply_async((2, 3), countdown=2)
    assert wait_until(lambda: any((tasks.app.control.inspect(timeout=1).scheduled() or {})
                                  .values()), 10)
    assert db.llen("celery") == 0
    assert result.id in "".join(db.hvals("unacked"))           # a copy, in case the worker dies
    assert result.get(timeout=WAIT) == 5
    assert 0 < db.ttl(f"celery-task-meta-{result.id}") <= 3600  # results expire
