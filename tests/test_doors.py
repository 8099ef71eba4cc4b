"""Every door a WSGI shop serves signin through, as real processes on the default embedded Redis.

waitress-serve (an app, and a factory), gunicorn's workers (forked before the
app is built, and after), two ``signin serve``
and a command beside them, and the Deploying page's own lines and systemd unit, each
with ``REDIS_URL`` unset: the case where every worker once started a
redis-server of its own. One redis-server serves them all, a token from one
process lives on all, SIGTERM stops everything, and a crash loses no answered
write.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signin.store import embedded
from tests.conftest import PASSWORD, SIGNIN
from tests.servers import (
    HOST,
    SigninServe,
    WsgiServe,
    code_blocks,
    embedded_redis_pids,
    http_call,
    instance_env,
    kill_embedded_redis,
    run_signin,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent
BIN = VENV / "bin"
SIGNIN_COMMAND = str(BIN / "signin")
ME = "/api/v2/account/me/"
SIGNOUT = "/api/v2/account/signout/"
SPOOFED = "203.0.113.7"
# Requests a round: every round's answers must all be what is expected.
ROUND = 20
# gunicorn's access log on standard output, a line a request: the worker's pid (<1234>), status, method, path.
ACCESS_LOG = ["--access-logfile", "-", "--access-logformat", "%(p)s %(s)s %(m)s %(U)s"]
# The page that shows the server command lines and the systemd unit.
DEPLOYING = "docs/deploying.md"


def documented_command(program: str, *containing: str) -> list[str]:
    """Return the Deploying page's one command line that runs ``program`` (and holds ``containing``), on port {port}."""
    lines = [
        line
        for block in code_blocks(DEPLOYING, "sh")
        for line in block.splitlines()
        if line.startswith(f"{program} ") and all(part in line for part in containing)
    ]
    assert len(lines) == 1, f"{DEPLOYING} shows {len(lines)} such {program} lines: {lines}"
    assert lines[0].count("8000") == 1, lines[0]
    command = shlex.split(lines[0].replace("8000", "{port}"), comments=True)
    return [str(BIN / program), *command[1:]]


GUNICORN_LINE = documented_command("gunicorn")
WAITRESS_LINE = documented_command("waitress-serve", "--no-clear-untrusted-proxy-headers")
WAITRESS_PLAIN_LINE = [part for part in WAITRESS_LINE if part != "--no-clear-untrusted-proxy-headers"]


def with_access_log(gunicorn: list[str]) -> list[str]:
    """Return a gunicorn command line that also logs which worker answered each request."""
    return [*gunicorn[:-1], *ACCESS_LOG, gunicorn[-1]]


# Behind a proxy: each door passes X-Forwarded-For on to the app.
DOORS = {
    "waitress-serve signin.wsgi:app": WAITRESS_LINE,
    "waitress-serve --call signin.wsgi:create_app": [*WAITRESS_LINE[:-1], "--call", "signin.wsgi:create_app"],
    "gunicorn -w 4 wsgi:app": with_access_log(
        [str(BIN / "gunicorn"), "-w", "4", "-b", f"{HOST}:{{port}}", "--chdir", str(ROOT), "wsgi:app"]
    ),
    # The app built once in the master, before the workers fork: their locks and writer threads are their own.
    "gunicorn -w 4 --preload wsgi:app": with_access_log(
        [str(BIN / "gunicorn"), "-w", "4", "--preload", "-b", f"{HOST}:{{port}}", "--chdir", str(ROOT), "wsgi:app"]
    ),
    # The Deploying page's line for N cores, with two workers.
    "gunicorn -w N --threads 8 signin.wsgi:app": with_access_log(
        ["2" if part == "N" else part for part in GUNICORN_LINE]
    ),
}


def instance_of(server: SigninServe) -> Path:
    return Path(server.env["SIGNIN_INSTANCE_PATH"])


def recorded_redis_pid(instance: Path) -> int:
    return int((instance / embedded.PIDFILE).read_text())


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory for an instance folder; whatever redis-server a failed test left running there is killed."""
    yield tmp_path
    kill_embedded_redis(tmp_path / "instance")


def sign_in(server: SigninServe, **headers: str) -> dict:
    status, body = http_call(server.port, "POST", SIGNIN, {"username": "alice", "password": PASSWORD}, headers=headers)
    assert status == 200, body
    return body["token"]


def audited(server: SigninServe, request_id: str) -> dict:
    """Return the audit line of a request, once the server's writer thread has written it."""
    wait_for(
        lambda: any(line["request_id"] == request_id for line in server.audit_lines()),
        5,
        f"the audit line of request {request_id}",
        log=server.log_path,
    )
    return next(line for line in server.audit_lines() if line["request_id"] == request_id)


def audited_address(server: SigninServe, forwarded_for: str) -> str:
    """Sign in with an X-Forwarded-For header; return the address the audit line gives."""
    request_id = uuid.uuid4().hex
    sign_in(server, **{"X-Forwarded-For": forwarded_for, "X-Request-ID": request_id})
    return audited(server, request_id)["address"]


def workers(server: WsgiServe) -> set[int]:
    """Return the pids of the processes answering requests: gunicorn's workers, else the server itself."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children} or {pid}


def access_lines(server: WsgiServe) -> list[tuple[int, int, str, str]]:
    """Return gunicorn's access log so far: (worker pid, status, method, path) a request."""
    lines = re.findall(r"^<(\d+)> (\d+) (\S+) (\S+)$", server.stdout_path.read_text(), flags=re.MULTILINE)
    return [(int(pid), int(status), method, path) for pid, status, method, path in lines]


def worker_count(server: WsgiServe) -> int:
    """Return how many processes answer requests: gunicorn's -w, else the server's one."""
    return int(server.command[server.command.index("-w") + 1]) if "-w" in server.command else 1


def rounds(server: WsgiServe, send: Callable[[], int], within: float = 15.0) -> tuple[list[int], set[int]]:
    """Send rounds of ROUND requests until every worker has answered one; return each status, and who answered.

    Which gunicorn worker takes a connection is the kernel's choice, and a
    worker not yet forked or booted takes none, so a round may miss one:
    another follows, for up to ``within`` seconds. waitress is one process: one round.
    """
    if "--access-logfile" not in server.command:
        return [send() for _ in range(ROUND)], workers(server)
    statuses: list[int] = []
    answered: set[int] = set()
    deadline = time.monotonic() + within
    while len(answered) < worker_count(server) and time.monotonic() < deadline:
        before = len(access_lines(server))
        statuses += [send() for _ in range(ROUND)]
        wait_for(lambda: len(access_lines(server)) >= before + ROUND, 5, "gunicorn's access log")  # noqa: B023
        answered |= {pid for pid, *_ in access_lines(server)[before:]}
    return statuses, answered


def every_worker_booted(server: WsgiServe) -> None:
    """Return once every worker has answered: the server is ready when its first one is, not its last."""
    statuses, answered = rounds(server, lambda: server.call("GET", "/healthz")[0])
    assert set(statuses) == {200}
    assert answered == workers(server) and len(answered) == worker_count(server)


@pytest.fixture(scope="module", params=list(DOORS))
def door(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsgiServe]:
    """signin behind a trusted proxy (SIGNIN_TRUSTED_PROXIES=1), served through one door on the embedded Redis."""
    directory = tmp_path_factory.mktemp("door")
    server = WsgiServe(DOORS[request.param], instance_env(directory, SIGNIN_TRUSTED_PROXIES="1"))
    try:
        server.start()
        every_worker_booted(server)
        yield server
    finally:
        server.close()
        kill_embedded_redis(directory / "instance")


def test_audit_lines_arrive_on_standard_error(door):
    request_id = uuid.uuid4().hex
    sign_in(door, **{"X-Request-ID": request_id})

    line = audited(door, request_id)  # read from standard error alone

    assert (line["event"], line["outcome"], line["username"]) == ("signin", "success", "alice")
    assert request_id not in door.stdout_path.read_text()


def test_a_token_from_one_worker_lives_on_every_worker_and_a_signout_on_one_ends_it_on_all(door):
    token = sign_in(door)["access_token"]

    live, answered_live = rounds(door, lambda: door.call("GET", ME, token=token)[0])
    assert door.call("POST", SIGNOUT, token=token)[0] == 204
    ended, answered_ended = rounds(door, lambda: door.call("GET", ME, token=token)[0])

    assert set(live) == {200} and len(live) >= ROUND
    assert set(ended) == {401} and len(ended) >= ROUND
    assert answered_live == answered_ended == workers(door)


def test_one_embedded_redis_serves_every_process(door):
    instance = instance_of(door)

    running = embedded_redis_pids(instance)

    assert len(running) == 1
    assert running == [recorded_redis_pid(instance)]


def test_x_forwarded_for_is_the_client_address_behind_a_trusted_proxy(door):
    assert audited_address(door, SPOOFED) == SPOOFED


def test_sigterm_stops_every_process_and_the_embedded_redis_with_every_audit_line_written(door):
    request_id = uuid.uuid4().hex
    sign_in(door, **{"X-Request-ID": request_id})
    processes = workers(door) | {door.process.pid}

    door.process.send_signal(signal.SIGTERM)

    assert door.process.wait(15) == 0
    assert embedded_redis_pids(instance_of(door)) == []
    assert not [pid for pid in processes if Path(f"/proc/{pid}/exe").exists()]
    assert audited(door, request_id)["event"] == "signin"


@pytest.mark.parametrize("name", DOORS)
def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(scratch, name):
    with WsgiServe(DOORS[name], instance_env(scratch)) as server:
        assert audited_address(server, SPOOFED) == "127.0.0.1"


def test_waitress_serve_drops_x_forwarded_for_without_no_clear_untrusted_proxy_headers(scratch):
    with WsgiServe(WAITRESS_PLAIN_LINE, instance_env(scratch, SIGNIN_TRUSTED_PROXIES="1")) as server:
        assert audited_address(server, SPOOFED) == "127.0.0.1"


def test_a_crash_of_the_server_and_its_redis_loses_no_answered_write(scratch):
    server = WsgiServe(DOORS["gunicorn -w 4 wsgi:app"], instance_env(scratch))
    instance = scratch / "instance"
    with server:
        every_worker_booted(server)  # else a worker booting after the kill would start the Redis again
        kept, ended = sign_in(server), sign_in(server)
        assert server.call("POST", SIGNOUT, token=ended["access_token"])[0] == 204
        redis_pid = recorded_redis_pid(instance)

        os.kill(redis_pid, signal.SIGKILL)
        server.kill()
        wait_for(lambda: not embedded_redis_pids(instance), 5, "the embedded Redis killed")
        server.start()

        assert server.call("GET", ME, token=ended["access_token"])[0] == 401
        assert server.call("GET", ME, token=kept["access_token"])[0] == 200
        assert embedded_redis_pids(instance) == [recorded_redis_pid(instance)] != [redis_pid]


def test_a_killed_embedded_redis_comes_back_without_a_restart(scratch):
    server = WsgiServe(DOORS["gunicorn -w 4 wsgi:app"], instance_env(scratch))
    instance = scratch / "instance"
    with server:
        every_worker_booted(server)  # else a worker booting after the kill would start the Redis again
        token = sign_in(server)["access_token"]
        before, redis_pid = workers(server), recorded_redis_pid(instance)

        os.kill(redis_pid, signal.SIGKILL)
        wait_for(lambda: not embedded_redis_pids(instance), 5, "the embedded Redis killed")
        killed = time.monotonic()
        statuses: list[int] = []
        while statuses[-ROUND:] != [200] * ROUND and time.monotonic() - killed < 10:
            statuses.append(server.call("GET", ME, token=token)[0])
        back = time.monotonic() - killed

        assert statuses[0] == 503
        assert set(statuses) == {503, 200}
        assert statuses[-ROUND:] == [200] * ROUND
        assert back < 5
        assert workers(server) == before
        assert embedded_redis_pids(instance) == [recorded_redis_pid(instance)] != [redis_pid]


def test_requests_that_find_the_embedded_redis_dead_answer_at_once_while_it_is_started_again(scratch):
    with SigninServe(instance_env(scratch)) as server:
        instance = instance_of(server)
        token = sign_in(server)["access_token"]
        os.kill(recorded_redis_pid(instance), signal.SIGKILL)
        wait_for(lambda: not embedded_redis_pids(instance), 5, "the embedded Redis killed")
        # Another process is slow to start it: the revival waits for that, no request does.
        starting = os.open(instance / embedded.START_LOCK, os.O_RDWR)
        fcntl.flock(starting, fcntl.LOCK_EX)
        try:
            statuses = [server.call("GET", ME, token=token, timeout=3)[0] for _ in range(2 * ROUND)]
        finally:
            os.close(starting)

        assert set(statuses) == {503}
        wait_for(lambda: server.call("GET", ME, token=token)[0] == 200, 5, "the embedded Redis back")


def test_two_servers_and_a_command_share_one_redis_and_the_last_to_stop_stops_it(scratch):
    env = instance_env(scratch)
    instance = scratch / "instance"
    with SigninServe(env) as one, SigninServe(env) as other:
        shared = embedded_redis_pids(instance)
        assert shared == [recorded_redis_pid(instance)]
        token = sign_in(one)["access_token"]
        assert other.call("GET", ME, token=token)[0] == 200

        listed = run_signin(env, "users", "list")
        assert listed.stdout == "alice\tactive\tno-totp\t1 session(s)\n"
        assert embedded_redis_pids(instance) == shared

        one.stop()
        assert one.process.returncode == 0
        assert embedded_redis_pids(instance) == shared
        assert other.call("GET", ME, token=token)[0] == 200

        other.stop()
        assert other.process.returncode == 0
        assert embedded_redis_pids(instance) == []


def documented_unit() -> tuple[str, configparser.ConfigParser]:
    """Return the Deploying page's systemd unit with the test's venv, and parsed (keys said more than once: the last)."""
    (unit,) = code_blocks(DEPLOYING, "ini")
    assert unit.count("/opt/signin/venv") >= 1 and unit.count("--port 8000") == 1
    unit = unit.replace("/opt/signin/venv", str(VENV))
    parsed = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parsed.optionxform = str
    parsed.read_string(unit)
    return unit, parsed


def unit_values(unit: str, key: str) -> list[str]:
    """Return every value of ``key`` in the unit's [Service] section, in order (Environment= comes many times)."""
    service = unit.split("[Service]", 1)[1].split("\n[", 1)[0]
    return re.findall(rf"^{key}=(.*)$", service, flags=re.MULTILINE)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_documented_systemd_unit_verifies(tmp_path):
    unit, _ = documented_unit()
    path = tmp_path / "signin.service"
    path.write_text(unit)

    checked = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )

    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == checked.stdout == ""


def test_the_documented_systemd_unit_serves_and_its_kill_signal_stops_it_cleanly(scratch):
    unit, parsed = documented_unit()
    service = parsed["Service"]
    instance = scratch / "instance"
    assert service["KillMode"] == "mixed"  # the kill signal goes to the main process alone, as below
    # systemd's environment for a service: PATH and the unit's Environment= lines.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for assignment in unit_values(unit, "Environment"):
        for word in shlex.split(assignment):
            key, _, value = word.partition("=")
            env[key] = value.replace("/var/lib/signin", str(instance))
    assert env["SIGNIN_INSTANCE_PATH"] == str(instance)
    for command in unit_values(unit, "ExecStartPre"):
        done = subprocess.run(shlex.split(command), env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    run_signin(env, "users", "create", "alice", "--password-stdin", input=PASSWORD + "\n")
    (start,) = unit_values(unit, "ExecStart")
    kill_signal = signal.Signals[service["KillSignal"]]
    stop_within = float(service["TimeoutStopSec"])

    with WsgiServe(shlex.split(start.replace("--port 8000", "--port {port}")), env) as server:
        token = sign_in(server)["access_token"]
        assert server.call("GET", ME, token=token)[0] == 200
        assert embedded_redis_pids(instance) == [recorded_redis_pid(instance)]

        server.process.send_signal(kill_signal)

        assert server.process.wait(stop_within) == 0
        assert embedded_redis_pids(instance) == []
        assert [line["event"] for line in server.audit_lines()] == ["signin"]
