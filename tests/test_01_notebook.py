"""Lesson 01: the notebook runs top to bottom from a fresh kernel and shows what it says."""
import ast
import re

from conftest import images_of, outputs_of


def test_notebook_01_runs_top_to_bottom_and_stops_its_workers(run_notebook):
    notebook = run_notebook("01_producer_worker.ipynb")
    text = outputs_of(notebook)
    assert "state: PENDING" in text and "messages waiting in the 'celery' list: 1" in text
    assert "result: 5" in text
    assert "raised here: ZeroDivisionError" in text
    per_worker = ast.literal_eval(re.search(r"jobs per worker: (\{.*\})", text).group(1))
    assert sum(per_worker.values()) == 15
    assert len(per_worker) >= 2  # spread over the workers (all 3, unless one was slow to start)
    assert "stopped: ['worker1', 'worker2', 'worker3']" in text
    images = images_of(notebook)
    assert len(images) == 3  # the four parts drawn, the state steps, the run timeline of 15 jobs
