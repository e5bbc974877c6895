"""Lesson 07: every worker pool runs the CPU-bound and the IO-bound task and returns the right
results (correctness only: bench/pools.py measures speed, never a test)."""
from __future__ import annotations

import importlib.util

import pytest

import tasks
from scenes import lesson_07_runs as runs

POOLS = ["solo", "prefork", "threads", "gevent", "eventlet"]
SEEDS = (1, 2, 3)


def expected_mean_power(seed: int) -> float:
    """The same FFT loop run here, in the test process: same seed, same numbers."""
    return tasks.fft_random(200, report=False, seed=seed)["mean_power"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pool", POOLS)
def test_each_pool_runs_the_cpu_and_the_io_task_with_the_right_results(pool):
    if not importlib.util.find_spec(pool) and pool in ("gevent", "eventlet"):
        pytest.fail(f"{pool} is pinned in requirements.txt but not installed")
    setup = runs.Setup(pool, pool=pool, concurrency=1 if pool == "solo" else 3)
    with runs.started([setup], timeout=120):
        _, values = runs.batch(setup, [tasks.fft_random.s(200, report=False, seed=seed)
                                       for seed in SEEDS], timeout=120)
        assert [value["rounds"] for value in values] == [200] * len(SEEDS)
        assert [value["mean_power"] for value in values] == pytest.approx(
            [expected_mean_power(seed) for seed in SEEDS], rel=1e-9)
        _, waited = runs.batch(setup, [tasks.io_wait.s(0.2)] * 3, timeout=120)
        assert len(waited) == 3 and all(0.19 <= seconds < 30 for seconds in waited), waited


def test_the_pools_bench_short_mode_prints_every_pool_and_the_rule_of_thumb():
    import subprocess
    import sys

    from labkit import REPO_ROOT
    done = subprocess.run([sys.executable, "bench/pools.py", "--short"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    for pool in POOLS:
        assert f"| {pool} |" in done.stdout, pool
    assert "× solo" in done.stdout and "rule of thumb, CPU-bound" in done.stdout
