"""Lesson 03: the lock benchmark runs and compares every lock (its numbers are not checked here:
speed goals live in bench/, never in timed tests)."""
import subprocess
import sys

from labkit import REPO_ROOT


def run_bench(*args):
    return subprocess.run([sys.executable, "bench/locks.py", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_bench_prints_every_lock_as_a_ratio_to_raw():
    done = run_bench("--cycles", "20", "--rounds", "2", "--handoffs", "0",
                     "--contention-seconds", "0")
    assert done.returncode == 0, done.stderr
    for label in ("raw SET NX PX + DEL", "raw again (control)", "bare commands", "locks.Lock",
                  "locks.Lock fair=True", "redis-py Lock", "python-redis-lock",
                  "pottery Redlock (1 master)"):
        assert label in done.stdout
    assert "1.00" in done.stdout
    assert "Redis's command time per cycle" in done.stdout
    assert "locks.Lock over the bare commands" in done.stdout


def test_bench_prints_handoff_and_contention_rows_for_every_lock_side_by_side():
    done = run_bench("--cycles", "5", "--rounds", "1", "--handoffs", "2",
                     "--contention-seconds", "0.3")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.split("handoff (", 1)[1].splitlines()
    for label in ("locks.Lock (polling)", "locks.Lock fair=True", "redis-py Lock",
                  "python-redis-lock", "pottery Redlock"):
        assert any(row.startswith(label) and " ms " in row for row in rows), label


def test_bench_with_bad_input_says_what_to_do_in_one_line():
    for bad in (["--cycles", "0"], ["--handoffs", "-1"], ["--server", "/no/such/redis-server"], ["--server", "/tmp"]):
        done = run_bench(*bad)
        assert done.returncode == 2, bad
        assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error:"), bad
