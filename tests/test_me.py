"""GET /api/v2/account/me/ and the bearer-token rules every protected route follows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from signin.store.database import db

ME = "/api/v2/account/me/"
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token is missing, invalid, expired or revoked.",
}


def test_me_describes_the_session(client, accounts, alice):
    token = accounts.signin(username="ALICE", scope="read")

    response = client.get(ME, headers=accounts.bearer(token))

    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["username", "client_id", "scope", "expires_at"]
    assert (body["username"], body["client_id"], body["scope"]) == ("alice", "signin", "read")
    expires_at = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires_at.timestamp() - datetime.now(UTC).timestamp() - 604800) < 5
    assert response.headers["Cache-Control"] == "no-store"


def test_me_runs_no_sql(app, client, accounts, alice):
    token = accounts.signin()
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(ME.rstrip("/"), headers=accounts.bearer(token)).status_code == 200
        assert statements == []
        accounts.signin()  # proves the listener sees what a request runs
        assert statements != []
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Bearer " + "x" * 43, "Bearer not-a-token", "Token abc"],
)
def test_a_missing_or_unknown_bearer_is_401(client, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = client.get(ME, headers=headers)

    assert response.status_code == 401
    assert response.get_json() == INVALID_TOKEN
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_the_bearer_scheme_is_case_insensitive(client, accounts, alice):
    token = accounts.signin()

    response = client.get(ME, headers={"Authorization": f"bearer {token['access_token']}"})

    assert response.status_code == 200


def test_an_expired_access_token_is_401(app, client, accounts, alice):
    import time

    from signin.store.tokens import token_store

    token = accounts.signin()
    with app.app_context():
        token_store().clock = lambda: time.time() + 604800

    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401


def test_a_known_selector_with_a_wrong_verifier_is_401(client, accounts, alice):
    token = accounts.signin()
    forged = token["access_token"].split(".")[0] + "." + "A" * 43

    assert client.get(ME, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200


def test_a_refresh_token_is_not_a_bearer_token(client, accounts, alice):
    token = accounts.signin()

    response = client.get(ME, headers={"Authorization": f"Bearer {token['refresh_token']}"})

    assert response.status_code == 401
