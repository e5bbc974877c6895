"""Lesson 01 plumbing: the embedded Redis path, `make redis`, and the demo end to end."""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import as_from_a_terminal, signal_state, wait_until
from labkit import RedisNotFound, ensure_redis, redis_answers
from labkit.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits for its parent to read its exit code.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return sys.platform != "linux"


def test_a_private_server_is_started_used_and_stopped_when_nothing_answers(monkeypatch):
    monkeypatch.delenv("REDIS_URL")
    nothing_here = f"redis://127.0.0.1:{free_port()}/0"
    server = ensure_redis(set_environment=False, default_url=nothing_here)
    try:
        assert server.started_here and server.url != nothing_here
        pid = server.process.pid
        import redis
        client = redis.Redis.from_url(server.url)
        client.set("lesson", "01")
        assert client.get("lesson") == b"01"
        client.close()
    finally:
        server.stop()
    assert not pid_alive(pid)
    assert not redis_answers(server.url, timeout=0.5)


def test_an_answering_default_is_used_and_left_running(monkeypatch, redis_url):
    monkeypatch.delenv("REDIS_URL")
    server = ensure_redis(set_environment=False, default_url=redis_url)
    assert not server.started_here and server.url == redis_url
    server.stop()
    assert redis_answers(redis_url)


def test_an_unreachable_redis_url_is_an_error_naming_it(monkeypatch):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", nowhere)
    with pytest.raises(RedisNotFound, match=f"no Redis at {nowhere} \\(from REDIS_URL\\)"):
        ensure_redis()


def test_the_private_server_dies_with_the_process_that_started_it():
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "from labkit import RedisServer; import time; s = RedisServer().start(); "
         "print(s.process.pid, flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(parent.stdout.readline())
        assert pid_alive(server_pid)
        parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can clean up
        parent.wait(5)
        assert wait_until(lambda: not pid_alive(server_pid), timeout=5), "orphan redis-server"
    finally:
        parent.kill()
        parent.stdout.close()


def test_make_redis_refuses_a_port_already_answering(redis_url):
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    done = subprocess.run([sys.executable, "-m", "labkit.redis_server", "--port", port],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "already answers" in done.stderr


def test_make_redis_runs_in_the_foreground_until_interrupted():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "labkit.redis_server", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              preexec_fn=as_from_a_terminal)
    try:
        assert "Redis ready at" in server.stdout.readline()
        assert redis_answers(f"redis://127.0.0.1:{port}/0")
        before = signal_state(server.pid)
        server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            assert server.wait(20) == 0
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 20 s after Ctrl-C; its signals: {before}")
        assert not redis_answers(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    finally:
        server.kill()
        server.stdout.close()


def run_demo(env: dict, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "labkit.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_demo_output(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "$ python invoker.py add 2 3" in out and "\n5\n" in out
    assert "ZeroDivisionError" in done.stderr  # the failing task, shown as the producer sees it
    for name in ("worker1", "worker2", "worker3"):
        assert f"{name}@" in out.split("Summary")[1]


def test_the_demo_runs_end_to_end_and_stops_its_workers(fresh_db_url):
    # A database of its own: the demo's workers must not share a queue with the session's fleet.
    done = run_demo({**os.environ, "REDIS_URL": fresh_db_url})
    assert_demo_output(done)
    assert "already running" in done.stdout


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare")
                         and shutil.which("ip")),
                    reason="needs root, unshare and ip to make a machine where nothing answers")
def test_the_demo_starts_its_own_redis_where_none_answers():
    # A fresh network namespace has nothing listening on localhost:6379: the demo's real
    # first-run path on a laptop without Redis.
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    done = subprocess.run(["unshare", "--net", "sh", "-c",
                           f"ip link set lo up && exec {sys.executable} -m labkit.demo"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert_demo_output(done)
    assert "private server started for this demo" in done.stdout


def test_ctrl_c_stops_everything_the_demo_started(fresh_db_url):
    demo = subprocess.Popen([sys.executable, "-m", "labkit.demo"], cwd=ROOT,
                            env={**os.environ, "REDIS_URL": fresh_db_url},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=as_from_a_terminal)
    try:
        lines = []
        while not (lines and lines[-1].startswith("Workers ready")):
            line = demo.stdout.readline()
            assert line, "demo ended before its workers were ready:\n" + "".join(lines)
            lines.append(line)
        worker_pids = [int(pid) for pid in re.findall(r"pid (\d+)", lines[-1])]
        assert len(worker_pids) == 3
        before = signal_state(demo.pid)
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest, _ = demo.communicate(timeout=30)
        assert demo.returncode == 130, f"its signals before Ctrl-C: {before}\n{rest[-2000:]}"
        assert "interrupted — stopping everything the demo started" in rest
        assert "Traceback" not in rest
        assert wait_until(lambda: not any(map(pid_alive, worker_pids)), timeout=10)
    finally:
        demo.kill()
        demo.stdout.close()
