"""``require_token`` protecting another Flask app's route, over the same Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask, g

from signin.web.auth import init_app, require_token
from signin.web.errors import APIError, error_response
from tests.conftest import UNAVAILABLE, Accounts
from tests.servers import RedisServer

REPORTS = "/reports"


@pytest.fixture
def internal(app, settings) -> Flask:
    """An internal service: its own Flask app, sharing signin's Redis."""
    other = Flask("internal")
    other.config["SIGNIN_REDIS_PREFIX"] = settings["SIGNIN_REDIS_PREFIX"]
    init_app(other, app.extensions["redis"].client)
    other.register_error_handler(APIError, error_response)

    @other.get(REPORTS)
    @require_token("read")
    def reports():
        return {"user": g.session.username}

    @other.get("/admin")
    @require_token("admin")
    def admin():
        return {}

    return other


def test_a_live_token_passes(internal, accounts, alice):
    token = accounts.signin()

    response = internal.test_client().get(REPORTS, headers=accounts.bearer(token))

    assert (response.status_code, response.get_json()) == (200, {"user": "alice"})


def test_no_token_is_401(internal):
    response = internal.test_client().get(REPORTS)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_signed_out_token_is_refused_at_once(internal, client, accounts, alice):
    token = accounts.signin()
    client.post("/api/v2/account/signout/", headers=accounts.bearer(token))

    assert internal.test_client().get(REPORTS, headers=accounts.bearer(token)).status_code == 401


def test_a_missing_scope_is_403(internal, accounts, alice):
    token = accounts.signin(scope="write")

    assert internal.test_client().get(REPORTS, headers=accounts.bearer(token)).status_code == 403
    response = internal.test_client().get("/admin", headers=accounts.bearer(accounts.signin()))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'


EMBEDDING = "docs/embedding.md"


def documented_example() -> str:
    """Return the Python code of the page "Protecting another service's routes"."""
    page = (Path(__file__).parent.parent / EMBEDDING).read_text()
    return page.split("```python\n", 1)[1].split("```", 1)[0]


def run_documented_example() -> Flask:
    """Run the page's example as pasted; return its app."""
    scope: dict = {"__name__": "reports"}
    exec(compile(documented_example(), EMBEDDING, "exec"), scope)  # noqa: S102 - our own page's code
    return scope["app"]


@pytest.fixture
def documented_app(settings, monkeypatch) -> Flask:
    """The page's example app, on the test's Redis and key prefix, set as an operator would: in the environment."""
    monkeypatch.setenv("REDIS_URL", settings["REDIS_URL"])
    monkeypatch.setenv("SIGNIN_REDIS_PREFIX", settings["SIGNIN_REDIS_PREFIX"])
    return run_documented_example()


def test_the_documented_example_runs_as_pasted(documented_app, accounts, alice):
    token = accounts.signin()
    client = documented_app.test_client()

    ok = client.get("/reports", headers=accounts.bearer(token))
    refused = client.get("/reports", headers={"Authorization": "Bearer nonsense"})

    assert (ok.status_code, ok.get_json()) == (200, {"reports_for": "alice"})
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "invalid_token"
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_the_documented_example_answers_503_as_json_while_redis_is_down(make_app, monkeypatch):
    with RedisServer() as server:
        signin = make_app({"REDIS_URL": server.url})
        accounts = Accounts(signin, signin.test_client())
        accounts.create("alice")
        token = accounts.signin()
        monkeypatch.setenv("REDIS_URL", server.url)
        monkeypatch.setenv("SIGNIN_REDIS_PREFIX", signin.config["SIGNIN_REDIS_PREFIX"])
        other = run_documented_example()
        assert other.test_client().get("/reports", headers=accounts.bearer(token)).status_code == 200
        server.stop()

        response = other.test_client().get("/reports", headers=accounts.bearer(token))

    assert response.status_code == 503
    assert response.get_json() == UNAVAILABLE
    assert response.headers["Retry-After"] == "1"


def test_the_embedding_helpers_keep_their_address_from_before_the_layers():
    # Apps written against signin 0.1 import them from signin.auth.
    import signin.auth
    import signin.web.auth

    for name in ("init_app", "require_token", "require_service", "token_store"):
        assert getattr(signin.auth, name) is getattr(signin.web.auth, name)
