"""Lesson 05a: `python invoker.py hello|chain|chord|retry …` as a user runs them, and their bad
input: one line, exit 2, nothing sent."""
import re

import pytest

from conftest import one_line


def test_hello_prints_hello_world(workers, run_invoker):
    done = run_invoker("hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello World!\n"


def test_chain_prints_each_link_and_the_result(workers, run_invoker):
    done = run_invoker("chain", 100, 5, 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "divide(100, 5) | divide(2)"
    assert re.search(r"1  divide\(100, 5\)\s+= 20\.0 .* on worker\d@", done.stdout)
    assert done.stdout.splitlines()[-1] == "10.0"


def test_a_zero_stops_the_chain_in_one_line_and_exit_1(workers, run_invoker):
    done = run_invoker("chain", 100, 0, 2)
    assert done.returncode == 1
    assert "never ran: FAILURE, with link 1's error" in done.stdout
    line = one_line(done.stderr)
    assert line.startswith("error: the chain stopped at link 1: divide raised ZeroDivisionError")


def test_chord_sums_the_parts(workers, run_invoker):
    done = run_invoker("chord", 1, 2, 4)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1.75"


def test_a_failing_part_gives_the_body_chord_error_and_link_error_logs_it(workers, run_invoker):
    done = run_invoker("chord", 1, 0, 4)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "body xsum never ran: ChordError: Dependency" in line
    assert "record_failure, logged it" in line


def test_retry_prints_each_attempt_and_succeeds(workers, run_invoker):
    done = run_invoker("retry", 1, "--backoff", 0.2)
    assert done.returncode == 0, done.stderr
    assert "attempt 1 failed on worker" in done.stdout
    assert "attempt 2 succeeded" in done.stdout


def test_retry_that_runs_out_gives_up_in_one_line(workers, run_invoker):
    done = run_invoker("retry", 3, "--backoff", 0.1, "--max-retries", 1)
    assert done.returncode == 1
    assert one_line(done.stderr) == ("error: tasks.flaky_backoff gave up after 1 retries: "
                                     "ConnectionError: attempt 2: the service did not answer")


@pytest.mark.parametrize("args, message", [
    (("chain", 1), "give 2 to 100 numbers, got 1"),
    (("chain", "nan", 1), "must be a number from -1e12 to 1e12, got nan"),
    (("chain", 1, "1e13"), "must be a number from -1e12 to 1e12, got 1e13"),
    (("chain", "two", 1), "expected a number, got 'two'"),
    (("chord",), "the following arguments are required: NUMBER"),
    (("chord", "inf"), "must be a number from -1e12 to 1e12, got inf"),
    (("hello", "world"), "unrecognized arguments: world"),
    (("retry", -1), "must be between 0 and 20 failures, got -1"),
    (("retry", 1, "--backoff", 0), "must be a number of seconds above 0 up to 60, got 0"),
    (("retry", 1, "--cap", 3), "--cap and --max-retries need --backoff"),
    (("retry", 1, "--backoff", 1, "--max-retries", 21), "must be between 0 and 20 retries"),
], ids=lambda value: " ".join(map(str, value)) if isinstance(value, tuple) else None)
def test_bad_input_is_one_line_and_exit_2_before_anything_is_sent(run_invoker, args, message):
    done = run_invoker(*args)
    assert done.returncode == 2 and done.stdout == ""
    line = one_line(done.stderr)
    assert line.startswith("error: ") and message in line and "--help" in line


def test_chain_waits_for_an_earlier_link_still_storing_its_result(capsys):
    """Forced: a worker sends a chain's next link before it stores its own result (Celery's
    trace.py), so the last link can be done while link 1 still reads STARTED. Here link 1's
    SUCCESS is stored 0.3 s after link 2's: the chain must print it as done, not as failed."""
    import threading
    import time
    import uuid

    import tasks
    from commands.common import stop_waiting
    from commands.lesson_05_canvas import _print_links, _wait_for_every_link

    backend = tasks.app.backend
    first, last = str(uuid.uuid4()), str(uuid.uuid4())
    backend.store_result(first, {"pid": 1, "hostname": "worker1@here"}, "STARTED")
    backend.store_result(last, 10.0, "SUCCESS")
    late = threading.Timer(0.3, backend.store_result, (first, 20.0, "SUCCESS"))
    late.start()
    links = [tasks.app.AsyncResult(first)]
    links.append(tasks.app.AsyncResult(last, parent=links[0]))
    try:
        _wait_for_every_link(links, time.monotonic() + 10)
        failed = _print_links(links, [100, 5, 2])
    finally:
        late.join(timeout=5)
        stop_waiting(links)
    assert failed is None, capsys.readouterr().out
    assert re.search(r"1  divide\(100, 5\)\s+= 20\.0", capsys.readouterr().out)
