"""Lesson 04: `python invoker.py fft|spectrum …`, live bars and bad input, as a user runs them."""
import re

import pytest

import tasks
from commands.lesson_04 import cancel
from conftest import one_line, wait_until

WAIT = 60


def test_fft_shows_a_bar_and_exits_0_on_success(workers, run_invoker):
    done = run_invoker("fft", 20_000)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\{'rounds': 20000, 'samples': 2000, 'mean_power': [\d.]+, .*\}\n",
                        done.stdout)
    assert re.search(r"fft_random [0-9a-f]{8}: 100%\|.*\| 20000/20000", done.stderr)


def test_fft_with_tasks_k_shows_k_bars(workers, run_invoker):
    done = run_invoker("fft", 10_000, "--tasks", 3)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("'rounds': 10000") == 3
    assert len(set(re.findall(r"fft_random ([0-9a-f]{8}): 100%", done.stderr))) == 3


def test_spectrum_prints_the_peaks_of_the_planted_tones(workers, run_invoker):
    done = run_invoker("spectrum", "--tones", 440, "1000:0.5", "--frames", 50, "--seed", 3)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "2 strongest peaks (bin width 1.95 Hz):"
    assert re.search(r"\b439\.45 Hz\s+magnitude 0\.9\d\d", done.stdout)
    assert re.search(r"\b1000\.00 Hz\s+magnitude 0\.[45]\d\d", done.stdout)


def test_no_wait_prints_the_task_ids(workers, run_invoker):
    done = run_invoker("--no-wait", "fft", 100, "--tasks", 2)
    assert done.returncode == 0
    assert re.fullmatch(r"([0-9a-f-]{36}\n){2}", done.stdout)


@pytest.mark.parametrize("args, message", [
    (("fft", 0), "n must be between 1 and 10,000,000 FFT rounds, got 0"),
    (("fft", -3), "n must be between 1 and 10,000,000 FFT rounds, got -3"),
    (("fft", "2.5"), "n must be a whole number of FFT rounds, got '2.5'"),
    (("fft", "many"), "n must be a whole number of FFT rounds, got 'many'"),
    (("fft", 20_000_000), "n must be between 1 and 10,000,000 FFT rounds, got 20,000,000"),
    (("fft", 10, "--tasks", 0), "argument --tasks: must be between 1 and 10,000 tasks, got 0"),
    (("spectrum", "--tones", -440), "tone -440 Hz is outside 0 < f < 4000 Hz"),
    (("spectrum", "--tones", 5000), "tone 5000 Hz is outside 0 < f < 4000 Hz, the Nyquist"),
    (("spectrum", "--tones", 3000, "--sample-rate", 4000), "tone 3000 Hz is outside 0 < f < 2000"),
    (("spectrum", "--frames", 0), "frames must be a whole number from 1"),
    (("spectrum", "--tones", "440:-1"), "amplitude of the 440 Hz tone must be a positive"),
    (("spectrum", "--tones", "la"), "a tone is FREQUENCY or FREQUENCY:AMPLITUDE, got 'la'"),
], ids=lambda value: " ".join(map(str, value)) if isinstance(value, tuple) else None)
def test_bad_input_is_one_line_and_exit_2_before_anything_is_sent(run_invoker, args, message):
    done = run_invoker(*args)   # no workers needed: nothing reaches the broker
    assert done.returncode == 2 and done.stdout == ""
    line = one_line(done.stderr)
    assert line.startswith("error: ") and message in line and "--help" in line


def test_help_lists_the_progress_commands(run_invoker):
    done = run_invoker("--help")
    assert "fft" in done.stdout and "spectrum" in done.stdout
    fft_help = " ".join(run_invoker("fft", "--help").stdout.split())
    assert "--tasks K" in fft_help and "--timeout is the longest wait without progress" in fft_help


def test_with_no_worker_the_bar_gives_up_after_timeout_and_says_how_to_start_one(run_invoker,
                                                                                    fresh_db_url):
    # A database of its own: a working broker that no worker listens on.
    done = run_invoker("--timeout", 1, "fft", 100, env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 4
    line = done.stderr.splitlines()[-1]   # after the bar, which stayed at 0 %
    assert line.startswith("error: no worker took the tasks within 1 s")
    assert "celery -A tasks worker" in line


def test_ctrl_c_names_a_task_that_does_not_stop_and_only_suggests_terminate(workers):
    # data_extractor sleeps and never reports, so it never sees the request: what a stuck task
    # looks like to Ctrl-C (`cancel` is what the bars call on KeyboardInterrupt).
    result = tasks.data_extractor.delay(3)
    assert wait_until(lambda: result.state == "STARTED", WAIT)
    error = cancel([result], "data_extractor", wait=0.5)
    assert error.code == 130
    assert re.fullmatch(
        rf"interrupted — asked 1 unfinished data_extractor task\(s\) to stop; 1 still running "
        rf"after 0\.\d s: {result.id} — the last resort kills the pool process running it "
        rf"\(prefork only\): `celery -A tasks control terminate SIGTERM {result.id}`", str(error))
    assert result.get(timeout=WAIT)["seconds"] == 3   # not terminated: it ran to its end
    assert not any(f"Terminating {result.id}" in worker.log_text() for worker in workers.workers)
