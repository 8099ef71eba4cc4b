"""POST /api/v2/account/password/ and the password policy, wherever a password is set."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from signin.rules import policy
from signin.rules.passwords import verify_password
from signin.store.database import db
from signin.store.models import User
from tests.conftest import PASSWORD, SIGNIN, Accounts, SignInLoop

PASSWORD_CHANGE = "/api/v2/account/password/"
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
NEW = "a brand new passphrase"
WRONG_CURRENT = {"error": "invalid_grant", "error_description": "The current password is wrong."}


def change(client, token, current=PASSWORD, new=NEW, **extra):
    headers = {"Authorization": f"Bearer {token['access_token']}", **extra}
    return client.post(PASSWORD_CHANGE, json={"current_password": current, "new_password": new}, headers=headers)


def stored_hash(app, username="alice") -> str:
    with app.app_context():
        return User.find(username).password_hash


def test_a_change_is_204_ends_every_other_session_and_keeps_the_bearers(app, client, accounts, alice):
    mine, other, elsewhere = accounts.signin(), accounts.signin(), accounts.signin()

    response = change(client, mine)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert client.get(ME, headers=accounts.bearer(mine)).status_code == 200
    for ended in (other, elsewhere):
        assert client.get(ME, headers=accounts.bearer(ended)).status_code == 401
        assert client.post(REFRESH, json={"refresh_token": ended["refresh_token"]}).status_code == 401
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 401
    assert client.post(SIGNIN, json={"username": "alice", "password": NEW}).status_code == 200


def test_a_wrong_current_password_is_400_and_changes_nothing(app, client, accounts, alice):
    mine, other = accounts.signin(), accounts.signin()
    before = stored_hash(app)

    response = change(client, mine, current="not my password")

    assert response.status_code == 400
    assert response.get_json() == WRONG_CURRENT
    assert stored_hash(app) == before
    assert client.get(ME, headers=accounts.bearer(other)).status_code == 200


@pytest.mark.parametrize(
    ("new", "reasons"),
    [
        ("short", ["too_short"]),
        ("x" * 1025, ["too_long"]),
        ("Password1", ["common"]),
        ("QWERTYUIOP", ["common"]),
        ("I am alice, really", ["like_username"]),
        ("ＡＬＩＣＥ and friends", ["like_username"]),  # normalised as usernames are
        (PASSWORD, ["unchanged"]),
        ("alice", ["too_short", "like_username"]),
    ],
)
def test_a_password_the_policy_refuses_is_400_with_its_reasons(app, client, accounts, alice, new, reasons):
    mine = accounts.signin()
    before = stored_hash(app)

    response = change(client, mine, new=new)

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "weak_password",
        "error_description": "The new password is not allowed; reasons says why.",
        "reasons": reasons,
    }
    assert stored_hash(app) == before


def test_no_composition_rule_and_a_1024_character_password_is_kept_whole(app, client, accounts, alice):
    new = "é" * 1024

    assert change(client, accounts.signin(), new=new).status_code == 204

    assert verify_password(stored_hash(app), new)
    assert not verify_password(stored_hash(app), new[:-1])


def test_the_minimum_length_is_a_setting(make_app):
    app = make_app({"SIGNIN_PASSWORD_MIN_LENGTH": 30})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")

    response = change(app.test_client(), accounts.signin(), new="twenty-nine characters long..")

    assert response.get_json()["reasons"] == ["too_short"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {},
            {
                "current_password": ["Missing data for required field."],
                "new_password": ["Missing data for required field."],
            },
        ),
        ({"current_password": PASSWORD, "new_password": ""}, {"new_password": ["Shorter than minimum length 1."]}),
        ({"current_password": PASSWORD, "new_password": 7}, {"new_password": ["Not a valid string."]}),
        (
            {"current_password": PASSWORD, "new_password": "\ud800 lone"},
            {"new_password": ["Not valid text: it holds a lone surrogate."]},
        ),
    ],
)
def test_a_malformed_body_is_400_invalid_request(client, accounts, alice, body, fields):
    token = accounts.signin()

    response = client.post(PASSWORD_CHANGE, json=body, headers=accounts.bearer(token))

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "error_description": "The request body has invalid fields.",
        "fields": fields,
    }


def test_without_a_live_bearer_token_it_is_401(client, accounts, alice):
    token = accounts.signin()
    client.post("/api/v2/account/signout/", headers=accounts.bearer(token))

    response = change(client, token)

    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_form_body_works_too(client, accounts, alice):
    token = accounts.signin()
    body = {"current_password": PASSWORD, "new_password": NEW}

    response = client.post(PASSWORD_CHANGE, data=body, headers=accounts.bearer(token))

    assert response.status_code == 204


def test_one_audit_line_with_no_secret(client, accounts, alice, caplog):
    token = accounts.signin()
    caplog.set_level(logging.INFO)
    accounts.signin()
    caplog.clear()

    change(client, token)

    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "signin.audit"]
    assert (line["event"], line["outcome"], line["username"], line["sessions_ended"]) == (
        "password_changed",
        "success",
        "alice",
        1,
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, NEW, token["access_token"], token["refresh_token"]):
        assert secret not in text


def test_wrong_current_passwords_count_as_failed_sign_ins(make_app):
    limits = {
        "RATELIMIT_ENABLED": True,
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS": "3 per minute",
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME": "100 per minute",
    }
    app = make_app(limits)
    client = app.test_client()
    Accounts(app, client).create("alice")
    token = Accounts(app, client).signin()

    answers = [change(client, token, current=f"guess {n}").status_code for n in range(2)]
    failed_signin = client.post(SIGNIN, json={"username": "alice", "password": "guess 2"}).status_code
    refused = change(client, token, current=PASSWORD)
    signin = client.post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    assert answers == [400, 400]
    assert failed_signin == 401
    assert refused.status_code == 429  # even the right password: the limit is full
    assert refused.get_json()["error"] == "rate_limited"
    assert signin.status_code == 429
    with app.app_context():
        assert verify_password(User.find("alice").password_hash, PASSWORD)


def test_a_change_racing_a_refresh_of_another_session_leaves_that_session_dead(app, client, accounts, alice):
    mine = accounts.signin()
    others = [accounts.signin() for _ in range(8)]
    barrier = threading.Barrier(len(others) + 1)
    refreshed: list = []

    def refresh(token):
        barrier.wait()
        response = app.test_client().post(REFRESH, json={"refresh_token": token["refresh_token"]})
        if response.status_code == 200:
            refreshed.append(response.get_json()["token"])

    threads = [threading.Thread(target=refresh, args=(token,)) for token in others]
    for thread in threads:
        thread.start()
    barrier.wait()
    assert change(app.test_client(), mine).status_code == 204
    for thread in threads:
        thread.join()

    for token in others + refreshed:
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
        assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 401
    assert client.get(ME, headers=accounts.bearer(mine)).status_code == 200


def test_sign_ins_with_the_old_password_racing_a_change_leave_no_session(make_app):
    # Checks of ~0.1 s, sign-ins one after another on 6 threads, the change in the middle of them.
    app = make_app({"SIGNIN_PASSWORD_METHOD": "pbkdf2:sha256:300000", "SIGNIN_HASH_CONCURRENCY": 8})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    mine = accounts.signin()
    with SignInLoop(app) as loop:
        time.sleep(0.3)
        assert change(app.test_client(), mine).status_code == 204
        time.sleep(0.3)
    tokens = loop.tokens

    assert tokens
    live = [t for t in tokens if app.test_client().get(ME, headers=accounts.bearer(t)).status_code == 200]
    assert live == []
    assert app.test_client().get(ME, headers=accounts.bearer(mine)).status_code == 200


def test_the_common_list_is_large_and_a_check_is_a_set_lookup():
    common = policy.common_passwords()

    assert len(common) >= 10_000
    assert isinstance(common, frozenset)
    assert policy.refusals("DRAGON", "bob", min_length=1) == ["common"]
    assert policy.refusals("a long passphrase of mine", "bob", min_length=8) == []


def test_passwords_set_earlier_still_sign_in(client, accounts):
    accounts.create("old", password="123456")  # a table filled before the policy

    assert client.post(SIGNIN, json={"username": "old", "password": "123456"}).status_code == 200
    with client.application.app_context():
        assert db.session.scalar(db.select(User.id).filter_by(username="old")) is not None
