"""GET /api/v2/account/sessions/, DELETE /api/v2/account/sessions/{id}/, DELETE /api/v2/account/sessions/."""

from __future__ import annotations

import re
import time

import pytest
from redis.cluster import RedisCluster

from signin.store.tokens import token_store
from tests.conftest import PASSWORD, SIGNIN, Accounts, stored_text

SESSIONS = "/api/v2/account/sessions/"
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
NO_SUCH_SESSION = {"error": "not_found", "error_description": "There is no such session."}


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@pytest.fixture
def clock(app):
    """Move the app's store clock by hand."""
    now = [float(int(time.time()))]
    with app.app_context():
        token_store().clock = lambda: now[0]
    return now


def sign_in(client, username="alice", agent="test-agent/1.0", address="192.0.2.10"):
    response = client.post(
        SIGNIN,
        json={"username": username, "password": PASSWORD},
        headers={"User-Agent": agent},
        environ_base={"REMOTE_ADDR": address},
    )
    assert response.status_code == 200
    return response.get_json()["token"]


def listed(client, token):
    response = client.get(SESSIONS, headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()["sessions"]


def test_the_list_has_exactly_the_contracts_fields_newest_first(client, alice, clock):
    started = clock[0]
    first = sign_in(client, agent="first/1", address="192.0.2.1")
    clock[0] += 60
    second = sign_in(client, agent="x" * 250, address="2001:db8::7")
    clock[0] += 30

    sessions = listed(client, first)

    assert [set(s) for s in sessions] == [
        {"id", "client_id", "scope", "created_at", "last_used_at", "expires_at", "address", "user_agent", "current"}
    ] * 2
    newest, oldest = sessions
    assert newest == {
        "id": newest["id"],
        "client_id": "signin",
        "scope": "read write",
        "created_at": rfc3339(started + 60),
        "last_used_at": rfc3339(started + 60),
        "expires_at": rfc3339(started + 60 + 604800),
        "address": "2001:db8::7",
        "user_agent": "x" * 200,
        "current": False,
    }
    assert oldest == {
        "id": oldest["id"],
        "client_id": "signin",
        "scope": "read write",
        "created_at": rfc3339(started),
        "last_used_at": rfc3339(started),
        "expires_at": rfc3339(started + 604800),
        "address": "192.0.2.1",
        "user_agent": "first/1",
        "current": True,
    }
    assert listed(client, second)[0]["current"] is True
    assert newest["id"] != oldest["id"]


def test_no_user_agent_is_an_empty_string(app, client, alice):
    response = client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}, headers={"User-Agent": ""})
    token = response.get_json()["token"]

    assert listed(client, token)[0]["user_agent"] == ""


def test_an_id_is_stable_across_refreshes_and_last_use_follows_the_touch_interval(client, alice, clock):
    token = sign_in(client)
    [before] = listed(client, token)
    clock[0] += 301
    token = client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).get_json()["token"]
    clock[0] += 100
    [refreshed] = listed(client, token)  # a token check less than 300 s after the refresh: not noted
    clock[0] += 200

    [checked] = listed(client, token)

    assert before["id"] == refreshed["id"] == checked["id"]
    assert refreshed["last_used_at"] == rfc3339(clock[0] - 300)  # the refresh
    assert checked["last_used_at"] == rfc3339(clock[0])  # this very check, 300 s after the refresh
    assert checked["created_at"] == before["created_at"]
    assert checked["expires_at"] == rfc3339(clock[0] - 300 + 604800)


def test_deleting_one_session_ends_it_at_once(client, accounts, alice):
    mine, other = sign_in(client), sign_in(client)
    other_id = next(s["id"] for s in listed(client, mine) if not s["current"])

    response = client.delete(f"{SESSIONS}{other_id}/", headers=accounts.bearer(mine))

    assert response.status_code == 204
    assert response.get_data() == b""
    assert client.get(ME, headers=accounts.bearer(other)).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": other["refresh_token"]}).status_code == 401
    assert [s["current"] for s in listed(client, mine)] == [True]
    again = client.delete(f"{SESSIONS}{other_id}", headers=accounts.bearer(mine))  # no trailing slash too
    assert (again.status_code, again.get_json()) == (404, NO_SUCH_SESSION)


def test_a_user_may_end_their_own_current_session(client, accounts, alice):
    mine = sign_in(client)
    [current] = listed(client, mine)

    assert client.delete(f"{SESSIONS}{current['id']}/", headers=accounts.bearer(mine)).status_code == 204
    assert client.get(ME, headers=accounts.bearer(mine)).status_code == 401


@pytest.mark.parametrize("which", ["another user's", "unknown", "a token", "a selector"])
def test_an_id_not_of_the_bearers_live_sessions_is_the_same_404(client, accounts, alice, which):
    accounts.create("bob")
    mine, bobs = sign_in(client), sign_in(client, "bob")
    candidate = {
        "another user's": listed(client, bobs)[0]["id"],
        "unknown": "AAAAAAAAAAAA",
        "a token": mine["access_token"],
        "a selector": mine["access_token"].split(".")[0],
    }[which]

    response = client.delete(f"{SESSIONS}{candidate}/", headers=accounts.bearer(mine))

    assert (response.status_code, response.get_json()) == (404, NO_SUCH_SESSION)
    assert client.get(ME, headers=accounts.bearer(bobs)).status_code == 200
    assert client.get(ME, headers=accounts.bearer(mine)).status_code == 200


def test_deleting_all_others_keeps_the_bearers_and_counts_them(client, accounts, alice):
    accounts.create("bob")
    mine, others, bobs = sign_in(client), [sign_in(client) for _ in range(3)], sign_in(client, "bob")

    response = client.delete(SESSIONS, headers=accounts.bearer(mine))

    assert (response.status_code, response.get_json()) == (200, {"ended": 3})
    for token in others:
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    assert client.get(ME, headers=accounts.bearer(mine)).status_code == 200
    assert client.get(ME, headers=accounts.bearer(bobs)).status_code == 200
    assert client.delete(SESSIONS, headers=accounts.bearer(mine)).get_json() == {"ended": 0}


def test_no_session_id_is_a_token_or_finds_one(client, accounts, alice, redis, prefix):
    tokens = [sign_in(client) for _ in range(3)]
    ids = [s["id"] for s in listed(client, tokens[0])]
    stored = stored_text(redis, prefix)

    for session_id in ids:
        assert client.get(ME, headers={"Authorization": f"Bearer {session_id}"}).status_code == 401
        assert client.post(REFRESH, json={"refresh_token": session_id}).status_code == 401
        assert session_id not in stored  # names no key, holds no digest
        for token in tokens:
            for part in (*token["access_token"].split("."), *token["refresh_token"].split(".")):
                assert session_id not in part


def test_listing_reads_only_that_users_sessions(client, accounts, alice, redis):
    accounts.create("bob")
    for _ in range(20):
        sign_in(client, "bob")
    mine, *_ = [sign_in(client) for _ in range(3)]
    before = command_calls(redis)

    assert len(listed(client, mine)) == 3

    after = command_calls(redis)
    calls = {name: after[name] - before.get(name, 0) for name in after}
    assert calls.get("cmdstat_get", 0) == 1 + 3  # the bearer's token check, then one per session
    assert not any(calls.get(f"cmdstat_{name}", 0) for name in ("scan", "keys"))


def command_calls(redis) -> dict[str, int]:
    """Count the calls of each command so far, over every node of a cluster."""
    if isinstance(redis, RedisCluster):
        nodes = redis.info("commandstats", target_nodes=RedisCluster.ALL_NODES).values()
    else:
        nodes = [redis.info("commandstats")]
    counts: dict[str, int] = {}
    for stats in nodes:
        for name, stat in stats.items():
            counts[name] = counts.get(name, 0) + stat["calls"]
    return counts


def test_the_sessions_endpoints_need_a_live_bearer_token(client):
    for method in ("get", "delete"):
        response = getattr(client, method)(SESSIONS)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert client.delete(f"{SESSIONS}AAAAAAAAAAAA/").status_code == 401


def test_the_cap_ends_the_oldest_session_and_says_so(make_app, caplog):
    app = make_app({"SIGNIN_MAX_SESSIONS_PER_USER": 2})
    now = [float(int(time.time()))]
    with app.app_context():
        token_store().clock = lambda: now[0]
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    oldest = accounts.signin()
    now[0] += 1  # sign-in times are whole seconds
    accounts.signin()
    now[0] += 1
    caplog.set_level("INFO")

    newest = accounts.signin()

    assert app.test_client().get(ME, headers=accounts.bearer(oldest)).status_code == 401
    assert len(listed(app.test_client(), newest)) == 2
    evicted = [r.getMessage() for r in caplog.records if '"event":"session_evicted"' in r.getMessage()]
    assert len(evicted) == 1 and '"username":"alice"' in evicted[0]


@pytest.mark.parametrize("candidate", ["%F2%93%BD%9F2%3C", "caf%C3%A9", "%ED%A0%80", "%00"])
def test_an_id_of_any_text_is_the_same_404(client, accounts, alice, candidate):
    mine = sign_in(client)

    response = client.delete(f"{SESSIONS}{candidate}/", headers=accounts.bearer(mine))

    assert (response.status_code, response.get_json()) == (404, NO_SUCH_SESSION)
