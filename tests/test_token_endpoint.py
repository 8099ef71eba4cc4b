"""POST /api/v2/account/token/: signin and refresh in RFC 6749's shape (sections 4.3, 5.1, 5.2 and 6)."""

from __future__ import annotations

import base64
import json

import pyotp
import pytest

from tests.conftest import PASSWORD, SIGNIN, Accounts, Clock

TOKEN = "/api/v2/account/token/"
ME = "/api/v2/account/me/"
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The credentials or refresh token are invalid, expired or revoked.",
}
UNKNOWN_CLIENT = {"error": "invalid_client", "error_description": "The client is not one of the configured clients."}
UNSUPPORTED = {
    "error": "unsupported_grant_type",
    "error_description": "The grant_type must be password or refresh_token.",
}


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def password_grant(client, username="alice", password=PASSWORD, headers=None, **extra):
    body = {"grant_type": "password", "username": username, "password": password, **extra}
    return client.post(TOKEN, data=body, headers=headers or {})


@pytest.mark.parametrize("path", [TOKEN, TOKEN.rstrip("/")])
def test_a_password_grant_answers_rfc_6749s_flat_token(client, alice, path):
    response = client.post(path, data={"grant_type": "password", "username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["access_token", "token_type", "expires_in", "refresh_token", "scope"]
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 604800, "read write")
    assert body["access_token"] != body["refresh_token"]
    assert (response.headers["Cache-Control"], response.headers["Pragma"]) == ("no-store", "no-cache")
    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert (me.status_code, me.get_json()["client_id"]) == (200, "signin")


def test_json_bodies_work_as_forms_do(client, alice):
    body = {"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "read"}

    response = client.post(TOKEN, json=body)

    assert (response.status_code, response.get_json()["scope"]) == (200, "read")


@pytest.mark.parametrize(
    ("headers", "body", "client_id"),
    [
        ({}, {}, "signin"),  # no client named: the first configured
        (basic("mobile"), {}, "mobile"),  # HTTP Basic, the id as user name, an empty password
        ({}, {"client_id": "mobile"}, "mobile"),
        (basic("mobile"), {"client_id": "mobile"}, "mobile"),  # both ways, the same client
    ],
)
def test_the_client_is_named_in_the_body_or_by_http_basic(make_app, headers, body, client_id):
    app = make_app({"SIGNIN_CLIENTS": "signin mobile"})
    Accounts(app, app.test_client()).create("alice")

    response = password_grant(app.test_client(), headers=headers, **body)

    assert response.status_code == 200
    token = response.get_json()["access_token"]
    assert app.test_client().get(ME, headers={"Authorization": f"Bearer {token}"}).get_json()["client_id"] == client_id


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"client_id": "elsewhere"}),
        ({}, {"client_id": ""}),
        (basic("elsewhere"), {}),
        (basic("signin", "a secret"), {}),  # the clients are public: no secret is theirs
        ({"Authorization": "Basic bm90IGJhc2U2NA=="}, {}),  # no colon: no user name and password
    ],
)
def test_an_unknown_client_is_401_invalid_client_with_a_basic_challenge(client, alice, headers, body):
    response = password_grant(client, headers=headers, **body)

    assert (response.status_code, response.get_json()) == (401, UNKNOWN_CLIENT)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="signin"'


def test_a_client_named_twice_differently_is_400(make_app):
    app = make_app({"SIGNIN_CLIENTS": "signin mobile"})

    response = password_grant(app.test_client(), headers=basic("signin"), client_id="mobile")

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("grant_type", [None, "", "client_credentials", "authorization_code", "PASSWORD"])
def test_a_missing_or_other_grant_type_is_400_unsupported_grant_type(client, alice, grant_type):
    body = {"username": "alice", "password": PASSWORD} | ({} if grant_type is None else {"grant_type": grant_type})

    response = client.post(TOKEN, data=body)

    assert (response.status_code, response.get_json()) == (400, UNSUPPORTED)


def test_every_refused_credential_gets_the_one_400_invalid_grant_body(client, accounts, alice):
    accounts.create("bob", active=False)

    answers = [
        password_grant(client, password="wrong"),
        password_grant(client, username="nobody"),
        password_grant(client, username="bob"),
        client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": "x" * 66}),
    ]

    assert [(a.status_code, a.get_json()) for a in answers] == [(400, INVALID_GRANT)] * 4
    assert len({a.data for a in answers}) == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"grant_type": "password", "password": PASSWORD}, ["username"]),
        ({"grant_type": "password", "username": "alice"}, ["password"]),
        ({"grant_type": "refresh_token"}, ["refresh_token"]),
    ],
)
def test_a_missing_field_is_400_invalid_request_naming_it(client, alice, body, fields):
    response = client.post(TOKEN, data=body)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert list(response.get_json()["fields"]) == fields


def test_a_scope_not_allowed_is_400_invalid_scope(client, alice):
    response = password_grant(client, scope="admin")

    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_scope")


def test_a_user_with_totp_needs_the_code_400_mfa_required_then_200(client, accounts, alice):
    token = accounts.signin()
    secret = client.post("/api/v2/account/totp/", headers=accounts.bearer(token), json={"password": PASSWORD})
    secret = secret.get_json()["secret"]
    confirmed = client.post(
        "/api/v2/account/totp/confirm/", headers=accounts.bearer(token), json={"code": pyotp.TOTP(secret).now()}
    )
    assert confirmed.status_code == 200

    without = password_grant(client)
    wrong = password_grant(client, otp="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    recovery = password_grant(client, otp=confirmed.get_json()["recovery_codes"][0])

    assert (without.status_code, without.get_json()) == (
        400,
        {"error": "mfa_required", "error_description": "This account needs a one-time code: send it as otp."},
    )
    assert (wrong.status_code, wrong.get_json()) == (400, INVALID_GRANT)
    assert recovery.status_code == 200


def test_a_refresh_grant_rotates_the_pair_once(client, alice):
    first = password_grant(client).get_json()

    response = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    again = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})

    assert response.status_code == 200
    second = response.get_json()
    assert list(second) == ["access_token", "token_type", "expires_in", "refresh_token", "scope"]
    assert second["refresh_token"] != first["refresh_token"]
    assert (again.status_code, again.get_json()) == (400, INVALID_GRANT)
    assert client.get(ME, headers={"Authorization": f"Bearer {first['access_token']}"}).status_code == 401
    assert client.get(ME, headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 200


def test_a_refresh_grant_by_http_basic_names_the_client_as_authlib_does(client, alice):
    first = password_grant(client, headers=basic("signin")).get_json()

    response = client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, headers=basic("signin")
    )

    assert response.status_code == 200


def test_the_tokens_are_the_same_kind_as_signins_each_endpoint_takes_the_others(client, accounts, alice):
    from_signin = accounts.signin()
    from_token = password_grant(client).get_json()

    across = [
        client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": from_signin["refresh_token"]}),
        client.post("/api/v2/account/refresh/", json={"refresh_token": from_token["refresh_token"]}),
    ]

    assert [response.status_code for response in across] == [200, 200]
    assert across[1].get_json()["token"]["expires_in"] == "604800"


def test_a_spent_refresh_token_after_the_grace_ends_the_session(make_app):
    clock = Clock()
    app = make_app()
    app.extensions["signin.tokens"].clock = clock
    client = app.test_client()
    Accounts(app, client).create("alice")
    first = password_grant(client).get_json()
    second = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})

    clock.now += 11
    reused = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})

    assert (reused.status_code, reused.get_json()) == (400, INVALID_GRANT)
    bearer = {"Authorization": f"Bearer {second.get_json()['access_token']}"}
    assert client.get(ME, headers=bearer).status_code == 401


def test_grants_are_audited_as_signin_and_refresh_are(client, alice, caplog):
    caplog.set_level("INFO", logger="signin.audit")
    first = password_grant(client).get_json()
    password_grant(client, password="wrong")
    client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "signin.audit"]
    assert [(line["event"], line["outcome"], line["reason"]) for line in lines] == [
        ("signin", "success", None),
        ("signin", "failure", "bad_password"),
        ("refresh", "success", None),
    ]
    for secret in (PASSWORD, "wrong", first["access_token"], first["refresh_token"]):
        assert secret not in caplog.text


def test_grants_are_counted_in_the_signin_and_refresh_metrics(client, alice):
    first = password_grant(client).get_json()
    password_grant(client, password="wrong")
    client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})

    metrics = client.get("/metrics").get_data(as_text=True)

    assert 'signin_signins_total{outcome="success"} 1.0' in metrics
    assert 'signin_signins_total{outcome="bad_password"} 1.0' in metrics
    assert 'signin_refreshes_total{outcome="success"} 1.0' in metrics
    assert 'signin_request_duration_seconds_count{endpoint="account.token",status="2xx"} 2.0' in metrics


THROTTLING = {
    "RATELIMIT_ENABLED": True,
    "SIGNIN_LIMIT_SIGNIN_PER_ADDRESS": "4 per minute",
    "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS": "2 per minute",
    "SIGNIN_LIMIT_REFRESH_PER_ADDRESS": "2 per minute",
}


def test_password_grants_share_signins_limits(make_app):
    app = make_app(THROTTLING)
    client = app.test_client()
    Accounts(app, client).create("alice")

    answers = [
        client.post(SIGNIN, json={"username": "alice", "password": "wrong"}).status_code,
        password_grant(client, password="wrong").status_code,
        # The failures per (username, address) are full, whichever endpoint filled them.
        password_grant(client).status_code,
        client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code,
    ]

    assert answers == [401, 400, 429, 429]


def test_every_attempt_counts_per_address_across_both_endpoints(make_app):
    app = make_app(THROTTLING)
    client = app.test_client()
    Accounts(app, client).create("alice")

    answers = [password_grant(client).status_code for _ in range(2)]
    answers += [client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code for _ in range(3)]

    assert answers == [200, 200, 200, 200, 429]


def test_refresh_grants_share_refreshs_limit(make_app):
    app = make_app(THROTTLING)
    client = app.test_client()
    Accounts(app, client).create("alice")
    token = password_grant(client).get_json()

    answers = [
        client.post("/api/v2/account/refresh/", json={"refresh_token": "x" * 66}).status_code,
        client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}).status_code,
        client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": "x" * 66}).status_code,
    ]

    assert answers == [401, 200, 429]
