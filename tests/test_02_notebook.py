"""Notebook 02 runs top to bottom from a fresh kernel, on a database of its own."""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from conftest import url_for_db

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_beat_overlap.ipynb"
DB = 12  # its workers, beats and queues never meet the session fleet's (database 0)


def test_notebook_02_runs_top_to_bottom(monkeypatch):
    monkeypatch.setenv("REDIS_URL", url_for_db(DB))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    started = time.monotonic()
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    print(f"notebook 02 ran in {time.monotonic() - started:.0f} s")

    outputs = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "overlapping runs of the extractor" in outputs
    assert "failover:" in outputs
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) >= 6   # timeline, queue length, expires, solo queue, two beats, redbeat
