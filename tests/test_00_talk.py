"""The brown-bag talk: a notebook a presenter can give, every demo live on the real workers."""
import re
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from conftest import images_of, outputs_of

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "00_brown_bag_talk.ipynb"
SECTIONS = ["Overview", "The broker", "Workers and concurrency", "Routing", "Beat",
            "Writing tasks", "Best practices", "The ecosystem: Flower"]
PRESENTING_BUDGET = 60.0   # seconds headless, the whole notebook
CELL_BUDGET = 10.0         # no cell as long as this


def slides_of(notebook) -> list:
    return [cell for cell in notebook.cells
            if cell.metadata.get("slideshow", {}).get("slide_type") == "slide"]


def test_the_talk_ends_by_stopping_what_it_started():   # committed clean: tests/test_layout.py
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].startswith("from labkit import ensure_redis; redis_server = ensure_redis()")
    assert "redis_server.stop()" in code[-1] and "fleet.stop()" in code[-1]


def test_the_talk_follows_the_outline_and_each_section_has_a_demo_notes_and_a_lesson():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    titles = [cell.source.splitlines()[0] for cell in slides_of(notebook)]
    for number, section in enumerate(SECTIONS, start=1):
        assert any(title.startswith(f"## {number} · {section}") for title in titles), section
    cells = notebook.cells
    for index, cell in enumerate(cells):
        if cell in slides_of(notebook) and cell.source.startswith("## ") and "·" in cell.source[:8]:
            following = cells[index + 1:index + 3]
            kinds = [c.metadata["slideshow"]["slide_type"] for c in following]
            assert kinds == ["fragment", "notes"], (cell.source.splitlines()[0], kinds)
            assert following[0].cell_type == "code"
            lessons = re.findall(r"\(([0-9][0-9][a-z]?_\w+\.ipynb)\)", cell.source)
            assert lessons and all((NOTEBOOK.parent / name).is_file() for name in lessons), \
                cell.source.splitlines()[0]


def cell_seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    started, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(ended) - parse(started)).total_seconds() if started and ended else 0.0


@pytest.mark.timeout(240)   # the budget is 60 s; the limit leaves room on a loaded CI machine
def test_the_talk_runs_top_to_bottom_and_every_demo_shows_what_the_slide_says(run_notebook):
    started = time.monotonic()
    notebook = run_notebook(NOTEBOOK.name, timeout=120)
    seconds = sorted(((cell_seconds(cell), number) for number, cell in enumerate(notebook.cells)
                      if cell.cell_type == "code"), reverse=True)
    print(f"the talk ran in {time.monotonic() - started:.1f} s; slowest cells (s, number): "
          + ", ".join(f"{s:.1f} (#{n})" for s, n in seconds[:3]))
    text = outputs_of(notebook)
    assert re.search(r"result: 5 from worker\d@\S+ \| state: SUCCESS", text)          # 1
    assert "Redis type: list | length: 1" in text and "'task': 'tasks.add'" in text   # 2
    assert "body: [[2, 3], {}, " in text
    assert re.search(r"6 jobs of 0\.5 s done in [\d.]+ s", text)                       # 3
    assert re.search(r"queue 'extract' ran on: extract@", text)                         # 4
    assert re.search(r"default queue ran on: worker\d@", text)
    sent = int(re.search(r"beat sent (\d+) orders in 3 s: .*'extract-data'", text).group(1))  # 5
    assert sent >= 2
    assert "soft time limit: SoftTimeLimitExceeded" in text                             # 6
    assert "callback: 4 then 14" in text and "chord of ten adds, then xsum: 90" in text
    assert int(re.search(r"longest queue: (\d+) orders waiting", text).group(1)) > 0    # 7
    workers = re.search(r"Flower lists: \[(.*)\]", text).group(1)                       # 8
    assert workers.count("@") == 4
    assert re.search(r"Flower saw: .*PROGRESS → SUCCESS", text)
    assert "Flower's task list has it: True" in text
    assert len(images_of(notebook)) >= 3     # the parts, the timeline, the queue length
    assert text.rstrip().endswith("stopped")
