"""The test session's real parts: one private Redis server and one fleet of real workers.

- The Redis server is started before any test module is imported (tasks.py reads REDIS_URL at
  import), on a free loopback port, and stopped when the session ends: tests never see a user's
  Redis, and can kill or restart their own.
- One fleet of `celery -A tasks worker` processes serves the whole session, as in Celery's own
  integration suite; starting workers per test is slow and is where suites hang.
- Tests that need an empty world (no worker, a notebook's own workers) take another database
  of the same server from the `fresh_db_url` (or `module_db_url`) fixture: queues, results and
  control messages are per database. Numbers are handed out, flushed, and taken back
  automatically, so no two tests of a test process share one at a time.
- Lesson 03's release tests also run on a Redis ≥ 8.4 (it has DELEX), started only if a test asks:
  REDIS8_SERVER, else the one `scripts/fetch_redis_8.sh` put in .cache/; without one they skip,
  saying how to get it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import redis

# Before labkit is imported: worker logs and beat schedules of this test process go in a directory
# of its own, so parallel test processes (pytest -n) never read each other's "ready" lines.
os.environ["LABKIT_RUN_DIR"] = RUN_DIR = tempfile.mkdtemp(prefix="labkit-tests-")

from labkit import REPO_ROOT, Fleet, RedisServer, redis_server  # noqa: E402

PRIVATE_REDIS = RedisServer()


def is_xdist_controller(config) -> bool:
    """With `pytest -n N`, the process that only hands out tests: it needs no Redis."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config):
    if is_xdist_controller(config):
        return
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)  # a user's settings must not point tests at their broker
    PRIVATE_REDIS.start()
    os.environ["REDIS_URL"] = PRIVATE_REDIS.url


def pytest_unconfigure(config):
    PRIVATE_REDIS.stop()
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def outputs_of(notebook) -> str:
    """The text an executed notebook printed, all code cells together."""
    return "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []))


def images_of(notebook) -> list:
    """The pictures (PNG outputs) an executed notebook drew."""
    return [output for cell in notebook.cells for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})]


def one_line(text: str) -> str:
    """`text` must be exactly one line (a user-facing error); return it."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def as_from_a_terminal() -> None:
    """preexec_fn for a child a test will Ctrl-C: SIGINT at its default and unblocked, as a shell
    starts a program, whatever this test process inherited (a CI run once saw two children of
    one test process ignore it)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_state(pid: int) -> str:
    """The kernel's view of a process's signals (Linux), for a failure message: which it
    blocks, ignores and catches, as hex masks (SIGINT is bit 2, 0x2)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return " ".join(line.strip() for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
    except OSError:
        return "(gone)"


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it is true or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def url_for_db(number: int) -> str:
    """The private server's URL with another database number (0 is the session fleet's)."""
    return PRIVATE_REDIS.url.rsplit("/", 1)[0] + f"/{number}"


class Databases:
    """The private server's databases 1…31, lent to one user at a time, empty when lent.

    (The server is started with 32 databases; 0 belongs to the session's fleet of workers.)
    """

    def __init__(self, count: int = 32):
        self.free = list(range(1, count))

    def take(self) -> str:
        if not self.free:
            raise RuntimeError("every database of the private Redis is lent out: a fixture "
                               "that takes one must give it back")
        number = self.free.pop(0)
        url = url_for_db(number)
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        return url

    def give_back(self, url: str) -> None:
        self.free.append(int(url.rsplit("/", 1)[1]))


DATABASES = Databases()


@pytest.fixture
def fresh_db_url():
    """An empty database of the private Redis for this test alone (no worker serves it)."""
    url = DATABASES.take()
    yield url
    DATABASES.give_back(url)


@pytest.fixture(scope="module")
def module_db_url():
    """An empty database of the private Redis for this test module alone."""
    url = DATABASES.take()
    yield url
    DATABASES.give_back(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return PRIVATE_REDIS.url


@pytest.fixture(scope="session")
def redis8_url() -> str:
    """A second private server, Redis ≥ 8.4: REDIS8_SERVER, else .cache/redis-8/redis-server.

    Without one, the tests that need it skip, or fail if REDIS8_REQUIRED is set (as in CI).
    """
    binary = os.environ.get("REDIS8_SERVER") or str(REPO_ROOT / ".cache/redis-8/redis-server")
    missing = pytest.fail if os.environ.get("REDIS8_REQUIRED") else pytest.skip
    runs = os.access(binary, os.X_OK) and subprocess.run(
        [binary, "--version"], capture_output=True, timeout=30).returncode == 0
    if not runs:
        missing(f"no Redis ≥ 8.4 runs at {binary}, to test DELEX releases on: run "
                "scripts/fetch_redis_8.sh (Debian, Ubuntu) or set REDIS8_SERVER")
    with RedisServer(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        version = client.info("server")["redis_version"]
        client.close()
        major, minor = map(int, version.split(".")[:2])
        if (major, minor) < (8, 4):
            pytest.fail(f"{binary} is Redis {version}: DELEX needs 8.4 or later")
        yield server.url


@pytest.fixture(params=["session Redis", "Redis 8.4+"])
def each_server_url(request, redis_url):
    """The test runs twice: on the session's server (Redis 7.0 on Debian 12, where a lock is
    released by a Lua script), then on a Redis ≥ 8.4 (released by DELEX)."""
    return redis_url if request.param == "session Redis" else request.getfixturevalue("redis8_url")


def has_delex(url: str) -> bool:
    """Whether the server at `url` has DELEX, the native compare-and-delete of Redis ≥ 8.4."""
    client = redis.Redis.from_url(url)
    try:
        return redis_server.has_delex(client)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def workers(tmp_path_factory):
    """worker1..3 on database 0, each one pool process: ready before the first test uses them."""
    fleet = Fleet(["worker1", "worker2", "worker3"], concurrency=1,
                  log_dir=tmp_path_factory.mktemp("worker-logs"))
    with fleet:
        yield fleet


@pytest.fixture
def run_invoker():
    """Run `python invoker.py ARGS` as a user would; returns the CompletedProcess."""
    def run(*args, env: dict | None = None, timeout: float = 60):
        return subprocess.run([sys.executable, "invoker.py", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})},
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    return run


@pytest.fixture
def run_notebook(fresh_db_url, tmp_path):
    """Execute a notebook top to bottom in a fresh kernel; returns the executed notebook, and a
    failing cell fails the test with the cell's error.

    By default the notebook runs as on a user's laptop: REDIS_URL unset, so it starts a private
    Redis, beside a Redis on the default port full of someone else's data, which must come out
    untouched (`users_redis.py`; needs root for a network namespace, else the notebook runs
    against a database of the test server). `redis_url=...` runs it against that URL instead.
    """
    import nbclient
    import nbformat
    from users_redis import CAN_RUN, run_beside_a_users_redis

    def run(name: str, timeout: float = 120, redis_url: str | None = None):
        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "notebooks", name)
        if CAN_RUN and redis_url is None:
            executed = tmp_path / name
            report = run_beside_a_users_redis(notebook=name, save_to=executed, timeout=timeout)
            if report["codes"]["notebook"]:
                raise nbclient.exceptions.CellExecutionError(report["errors"]["notebook"], "", "")
            assert report["changed"] == [], f"{name} changed a user's keys: {report['changed']}"
            return nbformat.read(executed, as_version=4)
        notebook = nbformat.read(path, as_version=4)
        saved = os.environ["REDIS_URL"]
        os.environ["REDIS_URL"] = redis_url or fresh_db_url  # the kernel inherits it
        try:
            client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                             resources={"metadata": {"path": os.path.dirname(path)}})
            client.execute()
        finally:
            os.environ["REDIS_URL"] = saved
        return notebook
    return run
