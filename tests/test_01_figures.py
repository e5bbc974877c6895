"""Lesson 01: `make figures-01` (`scripts/figures.py 01`) draws img/01_*.png from a real run
(here into a scratch folder)."""
import subprocess
import sys

from labkit import REPO_ROOT


def test_figures_01_script_writes_both_pictures_and_the_split_of_jobs(tmp_path):
    done = subprocess.run([sys.executable, "scripts/figures.py", "01", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("01_task_states.png", "01_which_worker.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "jobs per worker: {'worker" in done.stdout
