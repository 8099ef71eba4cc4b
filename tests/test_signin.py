"""POST /api/v2/account/signin/: the seed page and the contract, row by row."""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import msgpack
import pytest
from sqlalchemy import create_engine, text

from signin.rules.passwords import hash_password
from signin.store.models import User
from signin.store.tokens import digest, session_ref, token_store
from tests.conftest import PASSWORD, SIGNIN, Accounts, stored_text, stored_value

werkzeug_version = version("werkzeug")

# A selector naming the session (128 bits) and a verifier proving the token (256 bits).
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
# A username the database could not hold or compare (a lone surrogate, a NUL).
UNSTORABLE = "Not valid text: it holds a lone surrogate or a NUL character."
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The credentials or refresh token are invalid, expired or revoked.",
}


def test_signin_returns_the_seed_shape(client, alice):
    response = client.post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    token = response.get_json()["token"]
    assert list(response.get_json()) == ["token"]
    assert list(token) == ["access_token", "expires_in", "token_type", "refresh_token", "client_id", "scope"]
    assert token["expires_in"] == "604800"
    assert token["token_type"] == "Bearer"
    assert token["client_id"] == "signin"
    assert token["scope"] == "read write"
    assert TOKEN.fullmatch(token["access_token"]) and TOKEN.fullmatch(token["refresh_token"])
    assert token["access_token"] != token["refresh_token"]
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("path", [SIGNIN, SIGNIN.rstrip("/")])
def test_signin_answers_with_and_without_trailing_slash(client, alice, path):
    response = client.post(path, json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    assert "Location" not in response.headers


def test_signin_accepts_a_form_body(client, alice):
    response = client.post(SIGNIN, data={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    assert response.get_json()["token"]["token_type"] == "Bearer"


def test_a_form_body_is_decoded_and_its_first_value_wins(client, accounts):
    accounts.create("bob smith", "p&ss=wörd+1")
    body = "username=bob+smith&password=p%26ss%3Dw%C3%B6rd%2B1&password=other&extra="

    response = client.post(SIGNIN, data=body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200


def test_a_form_body_of_too_many_fields_is_400(client, alice):
    body = "&".join([f"username=alice&password={PASSWORD}"] + [f"f{n}=x" for n in range(100)])

    response = client.post(SIGNIN, data=body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "error_description": "The form body has more than 100 fields.",
    }


def test_every_signin_issues_new_random_tokens(accounts, alice):
    first, second = accounts.signin(), accounts.signin()

    assert first["access_token"] != second["access_token"]
    assert first["refresh_token"] != second["refresh_token"]


def test_unknown_fields_are_ignored(client, alice):
    body = {"username": "alice", "password": PASSWORD, "remember_me": True}

    assert client.post(SIGNIN, json=body).status_code == 200


@pytest.mark.parametrize(
    "typed",
    ["alice", "ALICE", "Alice", "ａｌｉｃｅ", "ＡＬＩＣＥ"],
)
def test_usernames_match_after_nfkc_and_case_folding(client, alice, typed):
    response = client.post(SIGNIN, json={"username": typed, "password": PASSWORD})

    assert response.status_code == 200


def test_folded_usernames_are_unique(accounts, alice):
    from signin.rules.refusals import UsernameTaken

    with pytest.raises(UsernameTaken):
        accounts.create("ＡＬＩＣＥ")


def test_sharp_s_folds_to_ss(client, accounts):
    accounts.create("Straße")

    assert client.post(SIGNIN, json={"username": "STRASSE", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("mallory", PASSWORD),
        ("alice", PASSWORD.upper()),
        ("alice", "pass\udfff"),  # no password hashes a lone surrogate
        ("nobody", "pass\udfff"),
    ],
)
def test_every_refusal_has_one_identical_body(client, accounts, alice, username, password):
    accounts.create("mallory", active=False)

    response = client.post(SIGNIN, json={"username": username, "password": password})

    assert response.status_code == 401
    assert response.get_json() == INVALID_GRANT
    assert response.headers["Cache-Control"] == "no-store"


def test_refusal_bodies_are_byte_identical(client, accounts, alice):
    accounts.create("mallory", active=False)
    bodies = {
        client.post(SIGNIN, json={"username": name, "password": password}).get_data()
        for name, password in [("alice", "nope"), ("nobody", "nope"), ("mallory", PASSWORD)]
    }

    assert len(bodies) == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"username": ["Missing data for required field."], "password": ["Missing data for required field."]}),
        ({"username": "alice"}, {"password": ["Missing data for required field."]}),
        ({"username": "", "password": PASSWORD}, {"username": ["Length must be between 1 and 150."]}),
        ({"username": "alice", "password": ""}, {"password": ["Length must be between 1 and 1024."]}),
        ({"username": "a" * 151, "password": PASSWORD}, {"username": ["Length must be between 1 and 150."]}),
        ({"username": "alice", "password": "p" * 1025}, {"password": ["Length must be between 1 and 1024."]}),
        ({"username": 42, "password": PASSWORD}, {"username": ["Not a valid string."]}),
        ({"username": "alice", "password": ["x"]}, {"password": ["Not a valid string."]}),
        ({"username": None, "password": PASSWORD}, {"username": ["Field may not be null."]}),
        ({"username": "alice", "password": PASSWORD, "client_id": "other"}, {"client_id": ["Unknown client."]}),
        ({"username": "alice", "password": PASSWORD, "scope": ""}, {"scope": ["Length must be between 1 and 1000."]}),
        ({"username": "\ud800", "password": PASSWORD}, {"username": [UNSTORABLE]}),
        ({"username": "ali\x00ce", "password": PASSWORD}, {"username": [UNSTORABLE]}),
    ],
)
def test_invalid_fields_are_400_with_fields(client, alice, body, fields):
    response = client.post(SIGNIN, json=body)

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "error_description": "The request body has invalid fields.",
        "fields": fields,
    }


@pytest.mark.parametrize(
    ("data", "description"),
    [
        ("{not json", "The body is not valid JSON."),
        ('["alice", "pw"]', "The JSON body must be an object."),
        ('"alice"', "The JSON body must be an object."),
        (b"\xff\xfe", "The body is not valid JSON."),
        ("[" * 5000 + "]" * 5000, "The JSON body is nested too deeply."),
    ],
)
def test_malformed_json_is_400(client, data, description):
    response = client.post(SIGNIN, data=data, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "error_description": description}


def test_an_empty_body_is_400(client):
    response = client.post(SIGNIN)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert set(response.get_json()["fields"]) == {"username", "password"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"])
def test_other_media_types_are_415(client, alice, content_type):
    body = json.dumps({"username": "alice", "password": PASSWORD})

    response = client.post(SIGNIN, data=body, content_type=content_type)

    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"


def test_a_body_over_the_limit_is_413(client):
    body = {"username": "alice", "password": "p" * 17000}

    response = client.post(SIGNIN, json=body)

    assert response.status_code == 413
    assert response.get_json() == {
        "error": "payload_too_large",
        "error_description": "The request body is larger than the limit.",
    }


@pytest.mark.parametrize("path", [SIGNIN, SIGNIN.rstrip("/")])
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch", "options"])
def test_other_methods_are_405(client, method, path):
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response.get_json() == {
        "error": "method_not_allowed",
        "error_description": "This endpoint does not allow that method.",
    }
    assert response.headers["Allow"] == "POST"


def test_requested_scope_is_granted_in_canonical_order(accounts, alice):
    token = accounts.signin(scope="write read read")

    assert token["scope"] == "read write"


def test_a_subset_scope_is_granted(accounts, alice):
    assert accounts.signin(scope="read")["scope"] == "read"


@pytest.mark.parametrize("scope", ["read admin", "read\twrite", "read\u00a0write", " "])
def test_a_scope_outside_the_allowed_is_400_invalid_scope(client, alice, scope):
    body = {"username": "alice", "password": PASSWORD, "scope": scope}

    response = client.post(SIGNIN, json=body)

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_scope",
        "error_description": "The requested scope is not allowed.",
    }


def test_a_configured_client_can_be_asked_for(make_app):
    app = make_app({"SIGNIN_CLIENTS": ["web", "cli"]})
    Accounts(app, app.test_client()).create("bob")

    body = {"username": "bob", "password": PASSWORD}
    default = app.test_client().post(SIGNIN, json=body).get_json()["token"]
    chosen = app.test_client().post(SIGNIN, json={**body, "client_id": "cli"}).get_json()["token"]

    assert (default["client_id"], chosen["client_id"]) == ("web", "cli")


def test_tokens_are_stored_as_digests_with_ttls(accounts, alice, redis, prefix):
    token = accounts.signin()
    selector, access_verifier = token["access_token"].split(".")
    refresh_verifier = token["refresh_token"].split(".")[1]

    keys = sorted(redis.scan_iter(match=prefix + "*"))
    session_key = f"{prefix}s:{session_ref(selector)}"
    assert session_key in keys
    assert f"{prefix}u:{alice}" in keys
    record = msgpack.unpackb(stored_value(redis, session_key))
    issued_at = record[4]
    assert record == [
        alice,
        "alice",
        "signin",
        "read write",
        issued_at,
        604800,  # the access token's lifetime from issued_at
        digest(access_verifier),
        digest(refresh_verifier),
        0,  # signed in at issued_at
        0,  # last used at issued_at
        "127.0.0.1",
        "Werkzeug/" + werkzeug_version,
    ]
    assert len(session_ref(selector)) == 16 and len(digest(access_verifier)) == 22  # 96 and 128 bits
    # The index scores the key's expiry rounded up to an eighth of its lifetime, and outlives it;
    # its member is the sign-in time in hex, then the ref.
    step = 604800 // 8
    score = -(-(issued_at + 604800) // step) * step
    member = f"{issued_at:08x}{session_ref(selector)}"
    assert redis.zrange(f"{prefix}u:{alice}", 0, -1, withscores=True) == [(member, score)]
    assert redis.ttl(f"{prefix}u:{alice}") >= redis.ttl(session_key)
    for key in keys:
        ceiling = {"known": 30 * 86400, "u": 604800 + step + 1}.get(key.removeprefix(prefix).split(":")[0], 604800)
        assert 0 < redis.ttl(key) <= ceiling
    stored = stored_text(redis, prefix)
    for secret in (selector, access_verifier, refresh_verifier, PASSWORD):
        assert secret not in stored


def test_ttls_follow_configuration(make_app, settings):
    from signin.store.tokens import token_store

    app = make_app({"SIGNIN_ACCESS_TOKEN_TTL": 900, "SIGNIN_REFRESH_TOKEN_TTL": 3600})
    helper = Accounts(app, app.test_client())
    helper.create("carol")
    token = helper.signin("carol")
    redis = app.extensions["redis"].client
    prefix = settings["SIGNIN_REDIS_PREFIX"]

    assert token["expires_in"] == "900"
    assert 3590 < redis.ttl(f"{prefix}s:{session_ref(token['access_token'].split('.')[0])}") <= 3600
    with app.app_context():
        store = token_store()
        session = store.resolve(token["access_token"])
        assert session.expires_at - session.issued_at == 900
        store.clock = lambda: session.issued_at + 901  # the access token has expired, the refresh token not
        assert store.resolve(token["access_token"]) is None
        assert store.resolve_any(token["refresh_token"]) is not None


def test_an_old_method_hash_is_replaced_on_signin(app, client, alice):
    with app.app_context():
        from signin.store.database import db

        user = db.session.get(User, alice)
        user.password_hash = hash_password(PASSWORD, "pbkdf2:sha256:500")
        db.session.commit()

    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 200

    with app.app_context():
        stored = db.session.get(User, alice).password_hash
    assert stored.startswith("pbkdf2:sha256:1000$")
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 200


def test_a_rehash_the_database_cannot_write_leaves_the_sign_in_standing(make_app, settings):
    app = make_app({"SIGNIN_STORE_TIMEOUT": 0.2})
    alice = Accounts(app, app.test_client()).create("alice")
    with app.app_context():
        from signin.store.database import db

        user = db.session.get(User, alice)
        user.password_hash = old = hash_password(PASSWORD, "pbkdf2:sha256:500")
        db.session.commit()
    holder = create_engine(settings["SQLALCHEMY_DATABASE_URI"])
    with holder.begin() as locked:  # another writer holds alice's row (the whole file, on SQLite)
        locked.execute(text("UPDATE users SET is_active = is_active WHERE id = :id"), {"id": alice})

        response = app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    with app.app_context():
        assert token_store().resolve(response.get_json()["token"]["access_token"]) is not None
    with holder.connect() as connection:  # the app's database rests a moment after its timeout
        stored = connection.scalar(text("SELECT password_hash FROM users WHERE id = :id"), {"id": alice})
    holder.dispose()
    assert stored == old  # moved at a later sign-in


def test_a_wrong_password_does_not_rehash(app, client, alice):
    with app.app_context():
        from signin.store.database import db

        user = db.session.get(User, alice)
        user.password_hash = old = hash_password(PASSWORD, "pbkdf2:sha256:500")
        db.session.commit()

    assert client.post(SIGNIN, json={"username": "alice", "password": "nope"}).status_code == 401

    with app.app_context():
        assert db.session.get(User, alice).password_hash == old
