"""Lesson 05a: retries with backoff, on the session's real workers and the run timeline. The
delays between attempts follow the configured backoff (no jitter: deterministic), Celery's own
options in whole seconds, ours in fractions; with jitter, whole seconds come back in waves."""
import pytest
from celery.utils.time import get_exponential_backoff_interval

import tasks
from scenes.lesson_05_canvas import (RETRY_DEMO, attempt_gaps, configured_delays, jitter_demo,
                                     run_retries)
from scenes.lesson_05_canvas_pictures import second_attempt_delays

EARLY = 0.05   # an ETA never fires early; this is clock and rounding slack
LATE = 1.0     # a loaded machine may run an attempt this much late


def within(gaps, delays):
    return len(gaps) == len(delays) and all(
        delay - EARLY <= gap <= delay + LATE for gap, delay in zip(gaps, delays))


@pytest.fixture(scope="module")
def report(workers):
    return run_retries(RETRY_DEMO)


def gaps_of(report, label_start):
    (task_id,) = [task_id for task_id, label in report["label_of"].items()
                  if label.startswith(label_start)]
    return attempt_gaps(report["runs"])[task_id], report["results"][report["label_of"][task_id]]


def test_autoretry_backoff_doubles_from_1_s_then_succeeds(report):
    gaps, result = gaps_of(report, "flaky(2)")
    assert within(gaps, configured_delays(2, backoff=1, cap=2)), gaps   # 1 s, 2 s
    assert result.get(timeout=1) == {"attempts": 3, "worker": result.worker}


def test_retry_backoff_max_caps_the_delay_and_max_retries_gives_up(report):
    gaps, result = gaps_of(report, "flaky(5)")
    assert within(gaps, [1, 2, 2]), gaps
    assert result.state == "FAILURE" and isinstance(result.result, ConnectionError)
    assert "attempt 4" in str(result.result)   # 1 try + max_retries=3, then the last error


def test_a_countdown_computed_in_the_task_gives_fractions_of_a_second(report):
    gaps, result = gaps_of(report, "flaky_backoff(5)")
    assert within(gaps, configured_delays(4, backoff=0.2, cap=1.6)), gaps   # 0.2 … 1.6 s
    assert result.state == "FAILURE"


def test_every_attempt_is_on_the_run_timeline(report):
    outcomes = sorted(run.outcome for run in report["runs"])
    assert outcomes.count("retried") == 2 + 3 + 4 and outcomes.count("failed") == 2
    assert outcomes.count("ran") == 1


def test_whole_second_jitter_draws_whole_seconds_and_fractions_spread(workers):
    # Celery's own function, as autoretry_for calls it: retry_jitter picks a whole number.
    draws = {get_exponential_backoff_interval(1, 0, 2, full_jitter=True) for _ in range(200)}
    assert draws == {0, 1}
    delays = second_attempt_delays(run_retries(jitter_demo(tasks_each=6)))
    assert len(delays["whole"]) == len(delays["full"]) == 6
    assert all(-EARLY <= delay <= 1 + LATE for delays_ in delays.values() for delay in delays_)


def test_the_retry_options_are_celerys_own():
    assert tasks.flaky.autoretry_for == (ConnectionError,)
    assert (tasks.flaky.retry_backoff, tasks.flaky.retry_backoff_max) == (1, 2)
    assert tasks.flaky.retry_jitter is False and tasks.flaky_jittered.retry_jitter is True
