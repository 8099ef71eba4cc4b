"""POST /api/v2/account/signout/: one session, or every session of one user."""

from __future__ import annotations

import pytest

SIGNOUT = "/api/v2/account/signout/"
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"


def test_signout_is_204_and_kills_the_pair(client, accounts, alice):
    token = accounts.signin()
    other = accounts.signin()

    response = client.post(SIGNOUT, headers=accounts.bearer(token))

    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 401
    assert client.get(ME, headers=accounts.bearer(other)).status_code == 200


def test_signout_twice_is_401_the_second_time(client, accounts, alice):
    token = accounts.signin()
    client.post(SIGNOUT, headers=accounts.bearer(token))

    response = client.post(SIGNOUT, headers=accounts.bearer(token))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("body", [{"everywhere": True}, {"everywhere": "true"}])
def test_signout_everywhere_kills_every_session_of_that_user_only(client, accounts, alice, body):
    accounts.create("bob")
    alices = [accounts.signin() for _ in range(3)]
    bobs = accounts.signin("bob")

    response = client.post(SIGNOUT, headers=accounts.bearer(alices[0]), json=body)

    assert response.status_code == 204
    for token in alices:
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
        assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 401
    assert client.get(ME, headers=accounts.bearer(bobs)).status_code == 200


def test_signout_everywhere_as_a_form(client, accounts, alice):
    first, second = accounts.signin(), accounts.signin()

    response = client.post(SIGNOUT, headers=accounts.bearer(first), data={"everywhere": "true"})

    assert response.status_code == 204
    assert client.get(ME, headers=accounts.bearer(second)).status_code == 401


def test_everywhere_false_ends_only_this_session(client, accounts, alice):
    first, second = accounts.signin(), accounts.signin()

    client.post(SIGNOUT, headers=accounts.bearer(first), json={"everywhere": False})

    assert client.get(ME, headers=accounts.bearer(second)).status_code == 200


def test_signout_leaves_no_keys_of_that_session(client, accounts, alice, redis, prefix):
    token = accounts.signin()

    client.post(SIGNOUT, headers=accounts.bearer(token), json={"everywhere": True})

    left = [key for key in redis.scan_iter(match=prefix + "*") if not key.startswith(prefix + "known:")]
    assert left == []


def test_signout_with_a_bad_body_is_400(client, accounts, alice):
    token = accounts.signin()

    response = client.post(SIGNOUT, headers=accounts.bearer(token), json={"everywhere": "maybe"})

    assert response.status_code == 400
    assert response.get_json()["fields"] == {"everywhere": ["Not a valid boolean."]}
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200
