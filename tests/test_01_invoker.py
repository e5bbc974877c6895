"""Lesson 01: `python invoker.py …` end to end, as a user runs it, including every mistake."""
import re
import time

from conftest import one_line
from labkit.redis_server import free_port


def test_add_prints_the_sum(workers, run_invoker):
    done = run_invoker("add", 2, 3)
    assert (done.returncode, done.stdout, done.stderr) == (0, "5\n", "")


def test_mul_xsum_and_extract_print_their_results(workers, run_invoker):
    assert run_invoker("mul", 6, 7).stdout == "42\n"
    assert run_invoker("xsum", 1, 2, 3, 4).stdout == "10\n"
    extract = run_invoker("extract", "--seconds", 0.1)
    assert extract.returncode == 0 and "'worker': 'worker" in extract.stdout


def test_mail_shows_which_worker_sent_which_email(workers, run_invoker):
    done = run_invoker("mail", "--count", 6)
    assert done.returncode == 0, done.stderr
    assert re.search(r"worker\d@\S+\s+sent\s+\d+: 0\d{3}", done.stdout)
    assert "emails sent for 6 messages" in done.stdout


def test_burst_prints_throughput(workers, run_invoker):
    done = run_invoker("burst", 30)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"30 tasks in [\d.]+ s: \d+ tasks/s\n", done.stdout)


def test_no_wait_prints_only_the_task_id(workers, run_invoker):
    done = run_invoker("--no-wait", "add", 2, 3)
    assert done.returncode == 0
    assert re.fullmatch(r"[0-9a-f-]{36}\n", done.stdout)


def test_without_arguments_it_runs_the_tour(workers, run_invoker):
    done = run_invoker()
    assert done.returncode == 0, done.stderr
    for command in ("add 2 3", "mail --count 6", "burst 50", "divide 1 0"):
        assert f"$ python invoker.py {command}" in done.stdout
    assert "ZeroDivisionError" in done.stdout


def test_help_teaches_the_subcommands(run_invoker):
    done = run_invoker("--help")
    assert done.returncode == 0
    for command in ("add", "mul", "xsum", "divide", "mail", "extract", "burst", "--no-wait"):
        assert command in done.stdout


def test_a_task_that_raises_shows_the_remote_exception(workers, run_invoker):
    done = run_invoker("divide", 1, 0)
    assert done.returncode == 1 and done.stdout == ""
    line = one_line(done.stderr)
    assert line.startswith("error: tasks.divide raised ZeroDivisionError: ")
    assert re.search(r"\(on worker\d@", line)


def test_an_unknown_subcommand_is_one_line_and_exit_2(run_invoker):
    done = run_invoker("nope")
    assert done.returncode == 2
    assert "invalid choice: 'nope'" in one_line(done.stderr)


def test_a_wrong_argument_type_is_one_line_and_exit_2(run_invoker):
    for args in (("add", "two", 3), ("burst", 0), ("mail", "--count", "x"), ("--timeout", "-1", "add", 1, 2)):
        done = run_invoker(*args)
        assert done.returncode == 2, args
        assert "--help" in one_line(done.stderr)


def test_no_broker_fails_fast_naming_redis_url(run_invoker):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    done = run_invoker("add", 2, 3, env={"REDIS_URL": nowhere})
    assert time.monotonic() - started < 10
    assert done.returncode == 3
    line = one_line(done.stderr)
    assert nowhere in line and "REDIS_URL" in line


def test_no_worker_answering_says_how_to_start_one(run_invoker, fresh_db_url):
    # A database of its own on the private server: a working broker that no worker listens on.
    done = run_invoker("--timeout", 1, "add", 2, 3, env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 4
    assert "celery -A tasks worker" in one_line(done.stderr)
