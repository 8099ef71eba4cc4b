"""Every door a WSGI shop serves signin through, as real processes on the default embedded Redis.

SIGTERM stops each cleanly: every audit line written, the embedded Redis
stopped by the last process to leave.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from signin import embedded
from tests.conftest import FAST_METHOD, PASSWORD, SIGNIN
from tests.servers import (
    HOST,
    SigninServe,
    WsgiServe,
    embedded_redis_pids,
    http_call,
    kill_embedded_redis,
    readme_blocks,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent
BIN = VENV / "bin"
SIGNIN_COMMAND = str(BIN / "signin")
ME = "/api/v2/account/me/"
SIGNOUT = "/api/v2/account/signout/"
# gunicorn's access log on standard output, a line a request: the worker's pid (<1234>), status, method, path.
ACCESS_LOG = ["--access-logfile", "-", "--access-logformat", "%(p)s %(s)s %(m)s %(U)s"]


def readme_command(program: str, *containing: str) -> list[str]:
    """Return the README's one command line that runs ``program`` (and holds ``containing``), on port {port}."""
    lines = [
        line
        for block in readme_blocks("sh")
        for line in block.splitlines()
        if line.startswith(f"{program} ") and all(part in line for part in containing)
    ]
    assert len(lines) == 1, f"the README shows {len(lines)} such {program} lines: {lines}"
    assert lines[0].count("8000") == 1, lines[0]
    command = shlex.split(lines[0].replace("8000", "{port}"), comments=True)
    return [str(BIN / program), *command[1:]]


GUNICORN_LINE = readme_command("gunicorn")
WAITRESS_LINE = readme_command("waitress-serve", "--no-clear-untrusted-proxy-headers")
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
    # The README's line for N cores, with two workers.
    "gunicorn -w N --threads 8 signin.wsgi:app": with_access_log(
        ["2" if part == "N" else part for part in GUNICORN_LINE]
    ),
}


def instance_env(directory: Path, **settings: str) -> dict[str, str]:
    """The environment of servers on a fresh instance folder holding alice: SQLite and the embedded Redis in it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL") and not key.startswith(("SIGNIN_", "RATELIMIT_"))
    }
    env.update(
        SIGNIN_INSTANCE_PATH=str(directory / "instance"),
        SIGNIN_PASSWORD_METHOD=FAST_METHOD,
        RATELIMIT_ENABLED="false",
        # gunicorn's control socket, here rather than in ~/.gunicorn where every gunicorn on the box puts it.
        XDG_RUNTIME_DIR=str(directory),
        **settings,
    )
    run_signin(env, "init-db")
    run_signin(env, "users", "create", "alice", "--password-stdin", input=PASSWORD + "\n")
    return env


def run_signin(env: dict[str, str], *arguments: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a ``signin`` command to its end; fail on a non-zero exit."""
    done = subprocess.run(
        [SIGNIN_COMMAND, *arguments], env=env, input=input, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def instance_of(server: SigninServe) -> Path:
    return Path(server.env["SIGNIN_INSTANCE_PATH"])


def recorded_redis_pid(instance: Path) -> int:
    return int((instance / embedded.PIDFILE).read_text())


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


def workers(server: WsgiServe) -> set[int]:
    """Return the pids of the processes answering requests: gunicorn's workers, else the server itself."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children} or {pid}


@pytest.fixture(scope="module", params=list(DOORS))
def door(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsgiServe]:
    """signin behind a trusted proxy (SIGNIN_TRUSTED_PROXIES=1), served through one door on the embedded Redis."""
    directory = tmp_path_factory.mktemp("door")
    server = WsgiServe(DOORS[request.param], instance_env(directory, SIGNIN_TRUSTED_PROXIES="1"))
    try:
        server.start()
        yield server
    finally:
        server.close()
        kill_embedded_redis(directory / "instance")


def test_sigterm_stops_every_process_and_the_embedded_redis_with_every_audit_line_written(door):
    request_id = uuid.uuid4().hex
    sign_in(door, **{"X-Request-ID": request_id})
    processes = workers(door) | {door.process.pid}

    door.process.send_signal(signal.SIGTERM)

    assert door.process.wait(15) == 0
    assert embedded_redis_pids(instance_of(door)) == []
    assert not [pid for pid in processes if Path(f"/proc/{pid}/exe").exists()]
    assert audited(door, request_id)["event"] == "signin"
