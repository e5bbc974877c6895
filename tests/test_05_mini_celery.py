"""Lesson 05a: Mini Celery, run by two real client processes on a database of its own, keeps
its promises (a scheduled task on time, a child after its parents) and shows the seed's flaws
(a failed parent's error handed to the child; nothing ever deleted)."""
import pytest

from scenes.lesson_05_canvas import mini_leftovers, run_mini_celery
from scenes.lesson_05_mini_celery import connect

LATE = 1.0   # seconds a loaded machine may start a due task late (clients look every 0.05 s)


@pytest.fixture(scope="module")
def report(module_db_url):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_URL", module_db_url)   # the client processes inherit it
        yield run_mini_celery(due_in=1.5)


def test_the_scheduled_task_runs_on_time_not_before(report):
    world = report["outcomes"]["world"]
    assert world["due"] <= world["started"] <= world["due"] + LATE
    assert world["value"] == "World"


def test_a_child_runs_after_its_parents_with_their_results(report):
    outcomes = report["outcomes"]
    assert outcomes["hello"]["value"] == "Hello World!"
    assert outcomes["hello"]["started"] >= outcomes["world"]["ended"]
    assert outcomes["add"]["value"] == 9 + 16
    assert outcomes["add"]["started"] >= max(outcomes["square(3)"]["ended"],
                                             outcomes["square(4)"]["ended"])


def test_both_clients_take_part_and_poll_while_idle(report):
    assert {outcome["client"] for outcome in report["outcomes"].values()} <= set(report["looks"])
    assert all(looks > 5 for looks in report["looks"].values())   # looked, found nothing, slept


def test_a_failed_parent_hands_its_error_to_the_child_as_an_argument(report):
    outcomes = report["outcomes"]
    assert outcomes["divide(1, 0)"]["error"] == "ZeroDivisionError('division by zero')"
    assert outcomes["hello "]["value"] == "Hello ZeroDivisionError('division by zero')!"


def test_nothing_mini_celery_stores_ever_expires(report, module_db_url):
    left = mini_leftovers(connect(module_db_url))
    assert left["by_kind"]["result"] == left["by_kind"]["task"] == 7
    assert left["expiring"] == 0
