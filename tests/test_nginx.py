"""signin behind a real nginx, configured with the Deploying page's own snippet, clients on several loopback addresses.

nginx appends the address it sees to ``X-Forwarded-For``; with
``SIGNIN_TRUSTED_PROXIES=1`` signin takes that last hop as the client's address,
for audit lines and throttling, whatever the client itself sent.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, SIGNIN, UNAVAILABLE
from tests.servers import (
    Nginx,
    SigninServe,
    code_blocks,
    free_port,
    http_call,
    instance_env,
    kill_embedded_redis,
    wait_for,
)

pytestmark = pytest.mark.skipif(Nginx.binary() is None, reason="nginx is not installed (apt-get install nginx)")

SIGNIN_COMMAND = str(Path(sys.executable).with_name("signin"))
ME = "/api/v2/account/me/"
# Sign-ins a client address may try a minute, here: one client fills it, another is not held back.
PER_ADDRESS = 3


def documented_nginx(signin_port: int) -> str:
    """Return the Deploying page's nginx snippet, listening on {port} and proxying to signin on signin_port."""
    (snippet,) = code_blocks("docs/deploying.md", "nginx")
    for written in ("listen 80;", "server 127.0.0.1:8000;"):
        assert snippet.count(written) == 1, f"the Deploying page's nginx snippet no longer says {written!r}"
    return snippet.replace("listen 80;", "listen 127.0.0.1:{port};").replace(
        "server 127.0.0.1:8000;", f"server 127.0.0.1:{signin_port};"
    )


@pytest.fixture(scope="module")
def signin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigninServe]:
    """``signin serve`` trusting one proxy, throttling sign-ins per address, on its own instance folder."""
    directory = tmp_path_factory.mktemp("nginx")
    env = instance_env(
        directory,
        SIGNIN_TRUSTED_PROXIES="1",
        RATELIMIT_ENABLED="true",
        SIGNIN_LIMIT_SIGNIN_PER_ADDRESS=f"{PER_ADDRESS} per minute",
    )
    try:
        with SigninServe(env) as server:
            yield server
    finally:
        kill_embedded_redis(directory / "instance")


@pytest.fixture(scope="module")
def nginx(signin: SigninServe) -> Iterator[Nginx]:
    with Nginx(documented_nginx(signin.port)) as server:
        yield server


def sign_in(nginx: Nginx, source: str, **headers: str) -> tuple[int, str]:
    """Sign in through nginx from the source address; return the status and the request's id."""
    request_id = uuid.uuid4().hex
    body = {"username": "alice", "password": PASSWORD}
    status, _ = http_call(
        nginx.port, "POST", SIGNIN, body, headers={"X-Request-ID": request_id, **headers}, source=source
    )
    return status, request_id


def audited_address(signin: SigninServe, request_id: str) -> str:
    """Return the address in a request's audit line, once written."""

    def lines() -> list[dict]:
        return [line for line in signin.audit_lines() if line["request_id"] == request_id]

    wait_for(lambda: bool(lines()), 5, f"the audit line of request {request_id}", log=signin.log_path)
    return lines()[0]["address"]


def test_each_client_is_audited_at_its_own_address(nginx, signin):
    answers = {source: sign_in(nginx, source) for source in ("127.0.0.2", "127.0.0.3")}

    assert [status for status, _ in answers.values()] == [200, 200]
    assert {source: audited_address(signin, request_id) for source, (_, request_id) in answers.items()} == {
        "127.0.0.2": "127.0.0.2",
        "127.0.0.3": "127.0.0.3",
    }


def test_one_client_is_throttled_while_another_still_signs_in(nginx, signin):
    statuses = [sign_in(nginx, "127.0.0.4")[0] for _ in range(PER_ADDRESS + 1)]
    status, request_id = sign_in(nginx, "127.0.0.5")

    assert statuses == [200] * PER_ADDRESS + [429]
    assert status == 200
    assert audited_address(signin, request_id) == "127.0.0.5"


def test_a_clients_own_x_forwarded_for_does_not_change_its_address(nginx, signin):
    throttled = [sign_in(nginx, "127.0.0.6")[0] for _ in range(PER_ADDRESS + 1)]
    # Claiming to be a fresh address does not lift a throttled client's limit...
    escape, _ = sign_in(nginx, "127.0.0.6", **{"X-Forwarded-For": "198.51.100.1"})
    # ...and claiming to be the throttled one does not put another client under it.
    status, request_id = sign_in(nginx, "127.0.0.7", **{"X-Forwarded-For": "127.0.0.6"})

    assert throttled[-1] == 429
    assert escape == 429
    assert status == 200
    assert audited_address(signin, request_id) == "127.0.0.7"


def test_nginx_answers_for_an_unreachable_signin_in_the_apis_shape():
    with Nginx(documented_nginx(free_port())) as nginx:
        status, body = http_call(nginx.port, "GET", ME)

    assert status == 503
    assert body == UNAVAILABLE
