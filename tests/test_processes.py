"""Two ``signin serve`` processes on one Redis and one database: any token works on either."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_METHOD, PASSWORD, SIGNIN, close_client, direct_client
from tests.servers import HOST, free_port, stop_process, wait_for

SIGNIN_COMMAND = str(Path(sys.executable).with_name("signin"))
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
SIGNOUT = "/api/v2/account/signout/"
STARTUP_DEADLINE = 30.0


def call(
    port: int, method: str, path: str, body: dict | None = None, token: str | None = None, **extra: str
) -> tuple[int, dict]:
    """Send one HTTP request to 127.0.0.1:port; return the status and the JSON body (or {})."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    headers = {"Content-Type": "application/json", **extra}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=json.dumps(body or {}), headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else {}


def start_serving(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """Start ``signin serve`` on the port, its output going to the log file; return once it answers."""
    command = [SIGNIN_COMMAND, "serve", "--port", str(port), "--threads", "4"]
    with log.open("wb") as output:
        # Own process group, so stop_process can kill it whole should SIGTERM not end it.
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: answers(port), STARTUP_DEADLINE, f"signin serve on {HOST}:{port}", process=process, log=log)
    except BaseException:
        stop(process)
        raise
    return process


def answers(port: int) -> bool:
    try:
        return call(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    stop_process(process, signal.SIGTERM, 10)


@pytest.fixture(scope="module")
def env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of servers sharing a fresh SQLite file, holding alice, and the session's Redis."""
    prefix = f"test:{uuid.uuid4().hex}:"
    directory = tmp_path_factory.mktemp("processes")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory}/signin.db",
        "REDIS_URL": redis_url,
        "SIGNIN_REDIS_PREFIX": prefix,
        "SIGNIN_PASSWORD_METHOD": FAST_METHOD,
        "RATELIMIT_ENABLED": "false",
    }
    subprocess.run([SIGNIN_COMMAND, "init-db"], env=env, check=True, capture_output=True, timeout=60)
    subprocess.run(
        [SIGNIN_COMMAND, "users", "create", "alice", "--password-stdin"],
        env=env,
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield env
    redis = direct_client(redis_url)
    for key in redis.scan_iter(match=prefix + "*"):
        redis.delete(key)
    close_client(redis)


@pytest.fixture(scope="module")
def ports(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """Start two servers on the same stores; stop them afterwards."""
    directory = tmp_path_factory.mktemp("logs")
    processes: list[subprocess.Popen] = []
    try:
        ports = (free_port(), free_port())
        for port in ports:
            processes.append(start_serving(env, port, directory / f"serve-{port}.log"))
        yield ports
    finally:
        for process in processes:
            stop(process)


def signin(port: int) -> dict:
    status, body = call(port, "POST", SIGNIN, {"username": "alice", "password": PASSWORD})
    assert status == 200, body
    return body["token"]


def test_a_token_from_one_process_works_on_the_other(ports):
    one, other = ports
    token = signin(one)

    status, me = call(other, "GET", ME, token=token["access_token"])

    assert status == 200
    assert me["username"] == "alice"


def test_a_refresh_on_one_process_is_honoured_on_the_other(ports):
    one, other = ports
    token = signin(one)

    status, body = call(one, "POST", REFRESH, {"refresh_token": token["refresh_token"]})
    assert status == 200
    fresh = body["token"]

    assert call(other, "GET", ME, token=fresh["access_token"])[0] == 200
    assert call(other, "GET", ME, token=token["access_token"])[0] == 401
    assert call(other, "POST", REFRESH, {"refresh_token": token["refresh_token"]})[0] == 401
    assert call(other, "POST", REFRESH, {"refresh_token": fresh["refresh_token"]})[0] == 200


def test_a_signout_on_one_process_ends_the_session_on_the_other(ports):
    one, other = ports
    token, elsewhere = signin(one), signin(other)

    assert call(one, "POST", SIGNOUT, {"everywhere": True}, token=token["access_token"])[0] == 204

    assert call(other, "GET", ME, token=token["access_token"])[0] == 401
    assert call(other, "GET", ME, token=elsewhere["access_token"])[0] == 401
    assert call(other, "POST", REFRESH, {"refresh_token": elsewhere["refresh_token"]})[0] == 401


def test_sigterm_stops_the_server_cleanly_with_every_audit_line_written(env, tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    process = start_serving(env, port, log)
    try:
        token = signin(port)
        assert call(port, "POST", SIGNOUT, token=token["access_token"])[0] == 204

        process.terminate()
        assert process.wait(10) == 0
    finally:
        stop(process)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [(line["event"], line["outcome"]) for line in lines] == [("signin", "success"), ("signout", "success")]


@pytest.mark.parametrize(("trusted", "address"), [("0", "127.0.0.1"), ("1", "203.0.113.7")])
def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(env, tmp_path, trusted, address):
    port, log = free_port(), tmp_path / "serve.log"
    process = start_serving({**env, "SIGNIN_TRUSTED_PROXIES": trusted}, port, log)
    try:
        body = {"username": "alice", "password": PASSWORD}
        assert call(port, "POST", SIGNIN, body, **{"X-Forwarded-For": "203.0.113.7"})[0] == 200
    finally:
        stop(process)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [(line["event"], line["address"]) for line in lines] == [("signin", address)]
