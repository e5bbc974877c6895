"""`make bench` (bench/all.py) runs every benchmark and prints one markdown table of ratios, with
the machine and the versions in its header. Its short mode here; the numbers are not checked."""
from __future__ import annotations

import subprocess
import sys

import pytest

from labkit import REPO_ROOT


@pytest.mark.timeout(900)
def test_make_bench_short_prints_one_table_of_every_benchmarks_ratios():
    done = subprocess.run([sys.executable, "bench/all.py", "--short"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=880)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Celery 5.7.0" in out and "Python 3." in out and "CPUs" in out   # the header
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0] == "| benchmark | measured side by side | ratio |"
    benchmarks = {line.split("|")[1].strip() for line in table[2:]}
    assert benchmarks == {"locks", "progress", "brokers", "pools", "tuning"}
    assert any("chunks of 10" in line and "× defaults" in line for line in table)
    assert any("locks.Lock" in line and "× raw" in line for line in table)
