"""``require_token`` protecting another Flask app's route, over the same Redis."""

from __future__ import annotations

import pytest
from flask import Flask, g

from signin.auth import init_app, require_token
from signin.errors import APIError, error_response

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
