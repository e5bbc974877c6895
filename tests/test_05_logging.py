"""Lesson 05b, task logging: what a worker logs for one task, and which of its lines name it."""
import re

import pytest

import tasks
from labkit import Worker
from scenes.lesson_05_logging import log_of_one_task, split_by_task_id
from scenes.producer import producer_for


@pytest.fixture(scope="module")
def logged(module_db_url):
    """One import_rows(3) on a worker of its own: (task id, the lines the worker logged)."""
    app = producer_for(module_db_url)
    try:
        with Worker("logs", env={"REDIS_URL": module_db_url}) as worker:
            yield log_of_one_task(worker, app, "tasks.import_rows", [3])
    finally:
        app.close()


def test_the_task_loggers_lines_carry_the_task_name_and_id(logged):
    task_id, lines = logged
    named, _ = split_by_task_id(task_id, lines)
    rows = [line for line in named if "imported row" in line]
    assert len(rows) == 3
    for number, line in enumerate(rows, start=1):
        assert re.fullmatch(rf"\[[\d\- :,]+: INFO/ForkPoolWorker-\d+\] tasks\.import_rows\["
                            rf"{task_id}\]: imported row {number} of 3", line), line


def test_the_worker_logs_receipt_and_success_with_the_id(logged):
    task_id, lines = logged
    named, _ = split_by_task_id(task_id, lines)
    assert any(re.search(rf"INFO/MainProcess\] Task tasks\.import_rows\[{task_id}\] received",
                         line) for line in named)
    assert any(f"Task tasks.import_rows[{task_id}] succeeded in" in line for line in named)


def test_a_plain_logger_and_print_reach_the_same_log_without_the_id(logged):
    # Celery configured the root logger (worker_hijack_root_logger, on by default), so a plain
    # logger's line is printed, in the worker's format, but nothing says which task wrote it.
    task_id, lines = logged
    _, unnamed = split_by_task_id(task_id, lines)
    assert any(re.search(r"INFO/ForkPoolWorker-\d+\] a plain logger's line", line)
               for line in unnamed)
    assert any(re.search(r"WARNING/ForkPoolWorker-\d+\] a print\(\) in a task", line)
               for line in unnamed)     # stdout is redirected at worker_redirect_stdouts_level


def test_the_settings_behind_it():
    assert tasks.app.conf.worker_hijack_root_logger is True
    assert "%(task_id)s" in tasks.app.conf.worker_task_log_format
    assert tasks.app.conf.worker_redirect_stdouts_level == "WARNING"
