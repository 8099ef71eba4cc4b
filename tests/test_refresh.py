"""POST /api/v2/account/refresh/: rotation, exactly once, and reuse detection."""

from __future__ import annotations

import threading
import time

import pytest

from signin.store.tokens import RefreshRejected, Session, TokenStore, digest, session_ref
from tests.conftest import Accounts, stored_value

REFRESH = "/api/v2/account/refresh/"
ME = "/api/v2/account/me/"
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The credentials or refresh token are invalid, expired or revoked.",
}


def test_refresh_returns_a_new_pair_in_the_seed_shape(client, accounts, alice):
    old = accounts.signin(scope="read")

    response = client.post(REFRESH, json={"refresh_token": old["refresh_token"]})

    assert response.status_code == 200
    new = response.get_json()["token"]
    assert list(new) == ["access_token", "expires_in", "token_type", "refresh_token", "client_id", "scope"]
    assert (new["expires_in"], new["token_type"], new["client_id"], new["scope"]) == (
        "604800",
        "Bearer",
        "signin",
        "read",
    )
    assert new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_refresh_kills_the_old_pair_at_once(client, accounts, alice):
    old = accounts.signin()

    new = client.post(REFRESH, json={"refresh_token": old["refresh_token"]}).get_json()["token"]

    assert client.get(ME, headers=accounts.bearer(old)).status_code == 401
    assert client.get(ME, headers=accounts.bearer(new)).status_code == 200
    again = client.post(REFRESH, json={"refresh_token": old["refresh_token"]})
    assert (again.status_code, again.get_json()) == (401, INVALID_GRANT)


def test_refresh_accepts_a_form_body_and_no_trailing_slash(client, accounts, alice):
    old = accounts.signin()

    response = client.post(REFRESH.rstrip("/"), data={"refresh_token": old["refresh_token"]})

    assert response.status_code == 200


def test_a_session_can_be_refreshed_again_and_again(client, accounts, alice):
    token = accounts.signin()
    for _ in range(5):
        token = client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).get_json()["token"]

    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200


@pytest.mark.parametrize("refresh_token", ["x" * 43, "not a token", "é" * 43])
def test_an_unknown_refresh_token_is_401(client, refresh_token):
    response = client.post(REFRESH, json={"refresh_token": refresh_token})

    assert (response.status_code, response.get_json()) == (401, INVALID_GRANT)


def test_an_access_token_is_not_a_refresh_token(client, accounts, alice):
    token = accounts.signin()

    response = client.post(REFRESH, json={"refresh_token": token["access_token"]})

    assert (response.status_code, response.get_json()) == (401, INVALID_GRANT)
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200  # a mix-up revokes nothing


def test_a_forged_verifier_for_a_known_session_revokes_it(client, accounts, alice):
    token = accounts.signin()
    forged = token["refresh_token"].split(".")[0] + "." + "A" * 43

    response = client.post(REFRESH, json={"refresh_token": forged})

    assert (response.status_code, response.get_json()) == (401, INVALID_GRANT)
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"refresh_token": ["Missing data for required field."]}),
        ({"refresh_token": ""}, {"refresh_token": ["Length must be between 1 and 512."]}),
        ({"refresh_token": 7}, {"refresh_token": ["Not a valid string."]}),
        ({"refresh_token": "r" * 513}, {"refresh_token": ["Length must be between 1 and 512."]}),
    ],
)
def test_a_bad_refresh_body_is_400(client, body, fields):
    response = client.post(REFRESH, json=body)

    assert response.status_code == 400
    assert response.get_json()["fields"] == fields


def test_eight_threads_racing_one_refresh_token_win_once(app, accounts, alice):
    token = accounts.signin()
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def present() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code)

    threads = [threading.Thread(target=present) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [401] * 7


def test_reuse_within_the_grace_is_refused_without_revoking(make_app):
    app = make_app({"SIGNIN_REFRESH_REUSE_GRACE": 3600})
    helper = Accounts(app, app.test_client())
    helper.create("bob")
    old = helper.signin("bob")
    client = app.test_client()
    new = client.post(REFRESH, json={"refresh_token": old["refresh_token"]}).get_json()["token"]

    reused = client.post(REFRESH, json={"refresh_token": old["refresh_token"]})

    assert (reused.status_code, reused.get_json()) == (401, INVALID_GRANT)
    assert client.get(ME, headers=helper.bearer(new)).status_code == 200
    assert client.post(REFRESH, json={"refresh_token": new["refresh_token"]}).status_code == 200


def test_reuse_after_the_grace_revokes_the_whole_session(make_app):
    app = make_app({"SIGNIN_REFRESH_REUSE_GRACE": 0})
    helper = Accounts(app, app.test_client())
    helper.create("bob")
    old = helper.signin("bob")
    other_session = helper.signin("bob")
    client = app.test_client()
    new = client.post(REFRESH, json={"refresh_token": old["refresh_token"]}).get_json()["token"]

    reused = client.post(REFRESH, json={"refresh_token": old["refresh_token"]})

    assert (reused.status_code, reused.get_json()) == (401, INVALID_GRANT)
    assert client.get(ME, headers=helper.bearer(new)).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": new["refresh_token"]}).status_code == 401
    assert client.get(ME, headers=helper.bearer(other_session)).status_code == 200


def test_the_default_grace_is_ten_seconds(app):
    from signin.store.tokens import token_store

    with app.app_context():
        assert token_store().reuse_grace == 10


def test_rotation_restarts_the_session_ttl_and_keeps_only_digests(client, accounts, alice, redis, prefix):
    old = accounts.signin()
    selector, old_verifier = old["refresh_token"].split(".")
    key = f"{prefix}s:{session_ref(selector)}"
    redis.expire(key, 1000)

    new = client.post(REFRESH, json={"refresh_token": old["refresh_token"]}).get_json()["token"]

    assert 604790 < redis.ttl(key) <= 604800
    record = stored_value(redis, key)
    assert digest(old_verifier).encode() in record  # kept to recognise reuse
    for secret in (selector, old_verifier, new["refresh_token"].split(".")[1], new["access_token"].split(".")[1]):
        assert secret.encode() not in record


def test_a_rotated_record_holds_the_new_digests_and_the_spent_one(client, accounts, alice, redis, prefix):
    old = accounts.signin()
    selector, spent = old["refresh_token"].split(".")

    new = client.post(REFRESH, json={"refresh_token": old["refresh_token"]}).get_json()["token"]

    ref = session_ref(selector)
    session = Session.load(ref, stored_value(redis, f"{prefix}s:{ref}"))
    issued_at, rotated_at_ms = session.issued_at, session.rotated_at_ms
    assert session == Session(
        ref=ref,
        user_id=alice,
        username="alice",
        client_id="signin",
        scope="read write",
        issued_at=issued_at,
        access_lifetime=604800,
        access_digest=digest(new["access_token"].split(".")[1]),
        refresh_digest=digest(new["refresh_token"].split(".")[1]),
        age_at_issue=session.age_at_issue,
        used_after_issue=0,
        address="127.0.0.1",
        user_agent=session.user_agent,
        previous_refresh_digest=digest(spent),
        rotated_at_ms=rotated_at_ms,
    )
    assert rotated_at_ms // 1000 == issued_at >= session.created_at


@pytest.mark.parametrize("username", ["zoë/名前", 'quote"back\\slash', "tab\there"])
def test_a_rotation_keeps_every_field_exactly(redis, prefix, username):
    store = TokenStore(redis, prefix=prefix)
    issued = store.issue(2**40, username, "cli", "read")

    rotated = store.rotate(issued.refresh_token)

    assert store.resolve(rotated.access_token) == rotated.session
    assert (rotated.session.user_id, rotated.session.username, rotated.session.client_id) == (2**40, username, "cli")


def test_rotations_move_the_user_index_only_when_its_rounded_expiry_moves(redis, prefix):
    # A lifetime of 800 s rounds index scores up to whole 100 s.
    start = int(time.time()) // 100 * 100 + 50
    now = [float(start)]
    store = TokenStore(redis, prefix=prefix, access_ttl=800, refresh_ttl=800, clock=lambda: now[0])
    index = f"{prefix}u:7"
    token = store.issue(7, "u", "signin", "read").refresh_token
    first = redis.zrange(index, 0, -1, withscores=True)
    redis.zadd(index, {"expired": start})  # an expired session's entry: any write to the index prunes it

    now[0] += 30
    token = store.rotate(token).refresh_token
    unmoved = redis.zrange(index, 0, -1, withscores=True)
    now[0] += 30
    session = store.rotate(token).session
    moved = redis.zrange(index, 0, -1, withscores=True)

    member = session.member
    assert member == f"{start:08x}{session.ref}"  # signed in at start
    assert first == [(member, start + 850)]  # expiry start + 800
    assert unmoved == [("expired", start), (member, start + 850)]  # expiry start + 830: index not written
    assert moved == [(member, start + 950)]  # expiry start + 860
    assert redis.ttl(index) >= redis.ttl(f"{prefix}s:{session.ref}")
    assert store.revoke_user(7) == 1


def test_a_refresh_token_shorter_lived_than_its_access_token_expires_on_time(redis, prefix):
    # The key lives as long as the access token; the refresh token must still die at its own expiry.
    now = [time.time()]
    # Uses not noted: the record must stay byte for byte as issued.
    store = TokenStore(
        redis, prefix=prefix, access_ttl=3600, refresh_ttl=900, touch_seconds=10**6, clock=lambda: now[0]
    )
    issued = store.issue(9, "u", "signin", "read")
    now[0] += 899
    assert store.resolve_any(issued.refresh_token) == (issued.session, issued.session.issued_at + 900, "refresh_token")

    now[0] += 1

    assert store.resolve_any(issued.refresh_token) is None
    with pytest.raises(RefreshRejected) as refused:
        store.rotate(issued.refresh_token)
    assert refused.value.reason == "unknown"
    assert store.resolve(issued.access_token) == issued.session  # the access token lives on
    assert stored_value(redis, f"{prefix}s:{issued.session.ref}") == issued.session.dump()


def test_a_session_gone_but_still_indexed_is_not_counted(redis, prefix):
    store = TokenStore(redis, prefix=prefix)
    store.issue(8, "u", "signin", "read")
    gone = store.issue(8, "u", "signin", "read").session
    redis.delete(f"{prefix}s:{gone.ref}")  # as if it had expired

    assert redis.zcard(f"{prefix}u:8") == 2
    assert store.session_count(8) == 1
