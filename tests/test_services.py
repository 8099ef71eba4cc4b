"""Introspection (RFC 7662) and revocation (RFC 7009) for registered services."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Accounts

INTROSPECT = "/api/v2/account/introspect/"
REVOKE = "/api/v2/account/revoke/"
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "The service credentials are missing or invalid.",
}


def basic(name: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def service(runner) -> dict[str, str]:
    result = runner.invoke(args=["services", "add", "billing"])
    assert result.exit_code == 0, result.output
    return basic("billing", result.output.strip().splitlines()[-1])


def test_introspecting_a_live_access_token(client, accounts, alice, service):
    token = accounts.signin(scope="read")

    response = client.post(INTROSPECT, headers=service, data={"token": token["access_token"]})

    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "active": True,
        "sub": str(alice),
        "username": "alice",
        "client_id": "signin",
        "scope": "read",
        "token_type": "Bearer",
        "token_use": "access_token",
        "exp": body["iat"] + 604800,
        "iat": body["iat"],
    }
    assert isinstance(body["iat"], int)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("hint", [None, "access_token", "something else"])
def test_a_live_refresh_token_is_no_bearer_token_so_inactive_unless_asked_about_as_one(
    client, accounts, alice, service, hint
):
    token = accounts.signin()
    body = {"token": token["refresh_token"]} | ({"token_type_hint": hint} if hint else {})

    response = client.post(INTROSPECT, headers=service, json=body)

    assert (response.status_code, response.get_json()) == (200, {"active": False})


def test_introspecting_a_live_refresh_token_with_its_hint(client, accounts, alice, service):
    token = accounts.signin(scope="read")

    response = client.post(
        INTROSPECT, headers=service, data={"token": token["refresh_token"], "token_type_hint": "refresh_token"}
    )

    body = response.get_json()
    assert body == {
        "active": True,
        "sub": str(alice),
        "username": "alice",
        "client_id": "signin",
        "scope": "read",
        "token_use": "refresh_token",
        "exp": body["iat"] + 604800,
        "iat": body["iat"],
    }


def test_an_access_token_hinted_as_a_refresh_token_is_still_found_as_an_access_token(client, accounts, alice, service):
    token = accounts.signin()

    body = client.post(
        INTROSPECT, headers=service, json={"token": token["access_token"], "token_type_hint": "refresh_token"}
    ).get_json()

    assert (body["active"], body["token_type"], body["token_use"]) == (True, "Bearer", "access_token")


@pytest.mark.parametrize(("access_ttl", "refresh_ttl"), [(900, 3600), (3600, 900)])
def test_introspection_reports_the_presented_tokens_own_expiry(make_app, access_ttl, refresh_ttl):
    app = make_app({"SIGNIN_ACCESS_TOKEN_TTL": access_ttl, "SIGNIN_REFRESH_TOKEN_TTL": refresh_ttl})
    client = app.test_client()
    Accounts(app, client).create("bob")
    token = Accounts(app, client).signin("bob")
    service = basic("billing", app.test_cli_runner().invoke(args=["services", "add", "billing"]).output.split()[-1])

    access = client.post(INTROSPECT, headers=service, json={"token": token["access_token"]}).get_json()
    refresh = client.post(
        INTROSPECT, headers=service, json={"token": token["refresh_token"], "token_type_hint": "refresh_token"}
    ).get_json()

    assert (access["active"], access["exp"] - access["iat"]) == (True, access_ttl)
    assert (refresh["active"], refresh["exp"] - refresh["iat"]) == (True, refresh_ttl)


@pytest.mark.parametrize("token", ["x" * 43, "garbage", "é"])
def test_anything_not_live_is_inactive(client, service, token):
    response = client.post(INTROSPECT, headers=service, json={"token": token, "token_type_hint": "access_token"})

    assert (response.status_code, response.get_json()) == (200, {"active": False})


def test_a_signed_out_token_is_inactive(client, accounts, alice, service):
    token = accounts.signin()
    client.post("/api/v2/account/signout/", headers=accounts.bearer(token))

    for value in (token["access_token"], token["refresh_token"]):
        assert client.post(INTROSPECT, headers=service, json={"token": value}).get_json() == {"active": False}


def test_a_spent_refresh_token_is_inactive(client, accounts, alice, service):
    token = accounts.signin()
    client.post(REFRESH, json={"refresh_token": token["refresh_token"]})

    body = client.post(INTROSPECT, headers=service, json={"token": token["refresh_token"]}).get_json()

    assert body == {"active": False}


@pytest.mark.parametrize("path", [INTROSPECT, REVOKE])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("billing", "wrong"),
        basic("nobody", "wrong"),
        basic("billing", ""),
        {"Authorization": "Basic !!!"},
        basic("bill\x00ing", "wrong"),
        {"Authorization": "Basic é"},
        {"Authorization": "Bearer abc"},
    ],
)
def test_bad_or_missing_caller_credentials_are_401(client, accounts, alice, service, path, headers):
    token = accounts.signin()

    response = client.post(path, headers=headers, json={"token": token["access_token"]})

    assert (response.status_code, response.get_json()) == (401, INVALID_CLIENT)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="signin"'
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200


def test_a_removed_service_can_no_longer_call(client, runner, service):
    assert runner.invoke(args=["services", "remove", "billing"]).exit_code == 0

    response = client.post(INTROSPECT, headers=service, json={"token": "x"})

    assert response.status_code == 401


@pytest.mark.parametrize("path", [INTROSPECT, REVOKE])
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"token": ["Missing data for required field."]}),
        ({"token": ""}, {"token": ["Length must be between 1 and 512."]}),
        ({"token": 5}, {"token": ["Not a valid string."]}),
        (
            {"token": "t", "token_type_hint": 3},
            {"token_type_hint": ["Not a valid string."]},
        ),
    ],
)
def test_a_bad_body_is_400(client, service, path, body, fields):
    response = client.post(path, headers=service, json=body)

    assert response.status_code == 400
    assert response.get_json()["fields"] == fields


def test_revoking_an_access_token_kills_its_session(client, accounts, alice, service):
    token = accounts.signin()
    other = accounts.signin()

    response = client.post(REVOKE, headers=service, data={"token": token["access_token"]})

    assert (response.status_code, response.get_json()) == (200, {})
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 401
    assert client.get(ME, headers=accounts.bearer(other)).status_code == 200


def test_revoking_a_refresh_token_kills_its_session(client, accounts, alice, service):
    token = accounts.signin()

    response = client.post(
        REVOKE, headers=service, json={"token": token["refresh_token"], "token_type_hint": "refresh_token"}
    )

    assert (response.status_code, response.get_json()) == (200, {})
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401


def test_an_unknown_hint_is_ignored(client, accounts, alice, service):
    token = accounts.signin()

    response = client.post(
        INTROSPECT, headers=service, json={"token": token["access_token"], "token_type_hint": "id_token"}
    )

    assert response.get_json()["active"] is True


def test_revoking_an_unknown_token_is_200(client, service):
    response = client.post(REVOKE, headers=service, json={"token": "never-issued"})

    assert (response.status_code, response.get_json()) == (200, {})


def test_a_revoked_token_is_dead_on_every_endpoint(client, accounts, alice, service):
    token = accounts.signin()
    client.post(REVOKE, headers=service, json={"token": token["access_token"]})

    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    assert client.post("/api/v2/account/signout/", headers=accounts.bearer(token)).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 401
    for value in token["access_token"], token["refresh_token"]:
        assert client.post(INTROSPECT, headers=service, json={"token": value}).get_json() == {"active": False}


def test_a_verified_service_is_remembered_without_a_query(app, client, service):
    from sqlalchemy import event

    from signin.store.database import db

    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    client.post(INTROSPECT, headers=service, json={"token": "x"})
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.post(INTROSPECT, headers=service, json={"token": "x"}).status_code == 200
        assert statements == []
        assert client.post(INTROSPECT, headers=basic("billing", "wrong"), json={"token": "x"}).status_code == 401
        assert statements != []  # a wrong secret is always checked against the database
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_remembered_service_expires(make_app):
    from signin.store.database import db

    app = make_app({"SIGNIN_SERVICE_CACHE_SECONDS": 0})
    secret = app.test_cli_runner().invoke(args=["services", "add", "ops"]).output.strip().splitlines()[-1]
    client = app.test_client()
    assert client.post(INTROSPECT, headers=basic("ops", secret), json={"token": "x"}).status_code == 200
    with app.app_context():
        from signin.store.models import Service

        db.session.execute(db.delete(Service))  # removed by another process
        db.session.commit()

    assert client.post(INTROSPECT, headers=basic("ops", secret), json={"token": "x"}).status_code == 401
