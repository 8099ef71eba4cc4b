"""The processes a benchmark runs against: ``signin serve``, gunicorn and the bare ceiling apps.

redis-server comes from the tests' harness (``tests/servers.py``), and so do
free ports and how a process is waited for and stopped: one harness for both.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from bench import gunicorn_hooks
from tests.servers import HOST, RedisServer, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 120.0


@dataclass
class Process:
    """A child process in its own session (so its own process group), logging to a file."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 20) -> str:
        """Return the end of the log, for error messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Send SIGTERM, then SIGKILL its process group after STOP_TIMEOUT; a no-op once it has exited."""
        stop_process(self.popen, signal.SIGTERM, STOP_TIMEOUT)


@contextlib.contextmanager
def spawn(
    name: str, command: list[str], workdir: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[Process]:
    """Run a command (in ``cwd``, else ``workdir``) for the duration of the block, stopping it however it ends."""
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our own fixed command lines
            command,
            cwd=cwd or workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(name, popen, log)
    try:
        yield process
    finally:
        process.stop()


def wait_until(ready: Callable[[], bool], process: Process, what: str) -> None:
    """Poll ``ready`` until true; fail early, with the end of its log, if the process dies."""
    wait_for(ready, STARTUP_TIMEOUT, what, process=process.popen, log=process.log)


def http_answers(port: int, path: str = "/healthz") -> bool:
    """Tell whether an HTTP server on the port answers at all."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class BenchRedis:
    """A redis-server of ``tests/servers.py``, and the one client the bench keeps on it."""

    server: RedisServer
    client: redis.Redis

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def version(self) -> str:
        return self.client.info("server")["redis_version"]


@contextlib.contextmanager
def redis_server(*args: str) -> Iterator[BenchRedis]:
    """Run a redis-server on a free loopback port: no persistence, unless ``args`` (its options) say otherwise."""
    # No socket timeout: flushing or filling a million sessions takes longer than the tests' 2 s.
    with RedisServer(args) as server, server.client(socket_timeout=None) as client:
        yield BenchRedis(server, client)


@dataclass
class SigninServer:
    """``signin serve`` with its own SQLite file, one user, and maybe an introspection service."""

    port: int
    env: dict[str, str]
    username: str
    password: str
    process: Process | None = None
    service: tuple[str, str] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run a ``signin`` command against this server's stores; return its output."""
        result = subprocess.run(  # noqa: S603 - our own CLI
            [str(VENV_BIN / "signin"), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"signin {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def add_service(self, name: str) -> tuple[str, str] | None:
        """Register an introspection caller; return (name, secret), or None if the CLI lacks the command."""
        try:
            secret = self.cli("services", "add", name).strip().splitlines()[-1].strip()
        except RuntimeError as exc:
            print(f"  (no introspection service: {str(exc).splitlines()[-1]})")
            return None
        self.service = (name, secret)
        return self.service


def bench_env(**settings: str) -> dict[str, str]:
    """Return this process's environment plus ``settings``, with the repository importable."""
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **settings)


@contextlib.contextmanager
def signin_server(
    workdir: Path, redis_url: str, threads: int, method: str | None = None, quiet_queue: bool = False
) -> Iterator[SigninServer]:
    """Create the database and a user in ``workdir``, then run ``signin serve`` until the block ends.

    With ``quiet_queue``, it runs through ``bench.quiet``: the same command with
    waitress's "Task queue depth" warning silenced, to see what that costs.
    """
    env = bench_env(DATABASE_URL=f"sqlite:///{workdir / 'signin.db'}", REDIS_URL=redis_url, RATELIMIT_ENABLED="false")
    if method:
        env["SIGNIN_PASSWORD_METHOD"] = method
    server = SigninServer(free_port(), env, "bench", secrets.token_urlsafe(18))
    server.cli("init-db")
    server.cli("users", "create", server.username, "--password-stdin", stdin=server.password + "\n")
    program = [sys.executable, "-m", "bench.quiet"] if quiet_queue else [str(VENV_BIN / "signin")]
    command = [*program, "serve", "--host", HOST, "--port", str(server.port), "--threads", str(threads)]
    with spawn("signin", command, workdir, env) as process:
        server.process = process
        wait_until(lambda: http_answers(server.port), process, "signin serve")
        yield server


@contextlib.contextmanager
def ceiling_server(workdir: Path, kind: str, redis_url: str, threads: int, quiet_queue: bool = False) -> Iterator[int]:
    """Serve one bare app of ``bench.ceilings`` with waitress; yield its port."""
    port = free_port()
    command = [sys.executable, "-m", "bench.ceilings", kind, "--port", str(port), "--threads", str(threads)]
    command += ["--redis-url", redis_url, *(["--quiet-queue"] if quiet_queue else [])]
    with spawn(f"ceiling-{kind}", command, workdir, bench_env()) as process:
        wait_until(lambda: http_answers(port, "/"), process, f"ceiling app {kind}")
        yield port


def workers_ready(process: Process, workers: int) -> bool:
    """Tell whether ``workers`` gunicorn workers have logged that they loaded the app."""
    return process.tail(10_000).count(gunicorn_hooks.READY) >= workers


@dataclass
class GunicornServer:
    """A gunicorn master serving on a port, and its workers."""

    port: int
    process: Process

    def connections_per_worker(self) -> list[int]:
        """Return how many client connections each worker holds now, fewest first.

        With keep-alive, a connection stays with the worker that accepted it:
        a load run's connections split between the workers as they fell.
        """
        counts = []
        for worker in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.Error):
                held = worker.net_connections("tcp")
                counts.append(sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port for c in held))
        return sorted(counts)


@contextlib.contextmanager
def gunicorn_server(workdir: Path, env: dict[str, str], workers: int, threads: int) -> Iterator[GunicornServer]:
    """Serve ``wsgi:app`` under gunicorn from the repository root until the block ends.

    It runs in its own process group and stops on SIGTERM (the master lets
    its workers finish), as any spawned process here. It is ready once every
    worker has loaded the app: until then the first one would take every
    connection of a load run, and keep them.
    """
    port = free_port()
    command = [str(VENV_BIN / "gunicorn"), "--bind", f"{HOST}:{port}", "-w", str(workers), "--threads", str(threads)]
    # The hooks only log each worker's readiness. gunicorn 27 otherwise opens a
    # control socket at one path in $HOME, shared by every gunicorn of the account.
    command += ["--config", f"python:{gunicorn_hooks.__name__}", "--no-control-socket", "wsgi:app"]
    with spawn("gunicorn", command, workdir, env, cwd=ROOT) as process:
        wait_until(lambda: workers_ready(process, workers) and http_answers(port), process, "gunicorn")
        yield GunicornServer(port, process)
