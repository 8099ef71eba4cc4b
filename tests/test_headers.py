"""The headers every answer carries: one request id, and no caching."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, SIGNIN

ME = "/api/v2/account/me/"


def test_the_request_id_is_returned_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc.123"})
    made = client.get("/healthz")
    again = client.get("/healthz")
    forged = client.get("/healthz", headers={"X-Request-ID": 'x" "event":"signin'})

    assert given.headers["X-Request-ID"] == "abc.123"
    assert len(made.headers["X-Request-ID"]) == 32
    assert made.headers["X-Request-ID"] != again.headers["X-Request-ID"]
    assert forged.headers["X-Request-ID"] != 'x" "event":"signin'
    assert len(forged.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", ME, 401),
        ("POST", SIGNIN, 400),
        ("GET", "/no-such-page", 404),
        ("DELETE", "/healthz", 405),
    ],
)
def test_every_answer_carries_one_request_id_and_is_never_cached(client, method, path, status):
    response = client.open(path, method=method, json={})

    assert response.status_code == status
    assert len(response.headers.getlist("X-Request-ID")) == 1
    assert response.headers.getlist("Cache-Control") == ["no-store"]
    assert response.headers.getlist("Pragma") == ["no-cache"]


def test_a_token_answer_is_never_cached(client, alice):
    response = client.post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    assert response.headers.getlist("Cache-Control") == ["no-store"]
    assert response.headers.getlist("Pragma") == ["no-cache"]
