"""Lesson 05b's logging scene: what a worker prints for one task, and which lines name it.

Usage (notebook 05b and tests/test_05_logging.py; a worker serving "celery" must run)::

    >>> lines = log_of_one_task(worker, tasks.app, "tasks.import_rows", [3])
    >>> [line for line in lines if result_id in line]   # the task logger's lines, and Celery's

A worker writes its log to stderr (or to --logfile): its own lines ("received", "succeeded")
from the main process, the task's lines from the pool process that ran it, on the same stream.
`labkit.processes.Worker` sends that stream to `worker.log_path`.
"""
from __future__ import annotations

from celery import Celery

from labkit import Worker
from scenes.lesson_05_time import WAIT, wait_for


def log_of_one_task(worker: Worker, app: Celery, name: str, args: list) -> tuple[str, list[str]]:
    """Send task `name`, wait until `worker` logged its end; (task id, the lines it logged
    meanwhile). The worker must be otherwise idle, or other tasks' lines come along."""
    before = len(worker.log_text())
    result = app.send_task(name, args)
    result.get(timeout=WAIT)
    wait_for(lambda: f"[{result.id}] succeeded" in worker.log_text()[before:], WAIT,
             f"{worker.name} to log the end of {result.id}")
    return result.id, worker.log_text()[before:].splitlines()


def split_by_task_id(task_id: str, lines: list[str]) -> tuple[list[str], list[str]]:
    """(lines that name `task_id`, lines that do not)."""
    return ([line for line in lines if task_id in line],
            [line for line in lines if task_id not in line])
