"""Throttling: every limit, its reset, lockout resistance and client addresses."""

from __future__ import annotations

import base64
import time

import pytest

from tests.conftest import PASSWORD, SIGNIN, Accounts

REFRESH = "/api/v2/account/refresh/"
INTROSPECT = "/api/v2/account/introspect/"
SMALL_LIMITS = {
    "RATELIMIT_ENABLED": True,
    "SIGNIN_LIMIT_SIGNIN_PER_ADDRESS": "8 per minute",
    "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS": "3 per minute",
    "SIGNIN_LIMIT_FAILURES_PER_USERNAME": "5 per minute",
    "SIGNIN_LIMIT_REFRESH_PER_ADDRESS": "3 per minute",
    "SIGNIN_LIMIT_SERVICE_CALLS": "3 per minute",
}
RATE_LIMITED = {
    "error": "rate_limited",
    "error_description": "Too many requests; retry after the number of seconds in Retry-After.",
}


@pytest.fixture
def make_app(make_app):  # extends conftest's: throttling on, small limits, a user
    def make(**overrides):
        app = make_app({**SMALL_LIMITS, **overrides})
        Accounts(app, app.test_client()).create("alice")
        return app

    return make


@pytest.fixture
def app(make_app):  # overrides conftest's: throttling on, small limits
    return make_app()


def attempt(client, password=PASSWORD, address="192.0.2.1", username="alice", **headers):
    return client.post(
        SIGNIN,
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


def assert_throttled(response):
    assert response.status_code == 429
    assert response.get_json() == RATE_LIMITED
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_only_a_refusal_asks_to_wait(client):
    answers = [attempt(client), attempt(client, password="wrong")]

    assert [answer.status_code for answer in answers] == [200, 401]
    for answer in answers:
        assert "Retry-After" not in answer.headers
        assert answer.headers["X-RateLimit-Limit"] == "8"


def test_every_attempt_counts_per_address(client):
    for _ in range(8):
        assert attempt(client).status_code == 200

    assert_throttled(attempt(client))
    assert attempt(client, address="192.0.2.2").status_code == 200


def test_failures_per_username_and_address_are_tight(client):
    for _ in range(3):
        assert attempt(client, password="guess").status_code == 401

    assert_throttled(attempt(client, password="guess"))
    assert_throttled(attempt(client))  # even the right password, from there
    assert attempt(client, address="192.0.2.2").status_code == 200


def test_successes_do_not_count_as_failures(client):
    for _ in range(6):
        assert attempt(client).status_code == 200

    assert attempt(client, password="typo").status_code == 401


def test_distributed_guessing_is_throttled_per_username(client):
    for n in range(5):
        assert attempt(client, password="guess", address=f"198.51.100.{n}").status_code == 401

    assert_throttled(attempt(client, password="guess", address="198.51.100.99"))
    assert_throttled(attempt(client, address="198.51.100.98"))


def test_the_owner_still_signs_in_from_a_remembered_address(client):
    assert attempt(client, address="203.0.113.7").status_code == 200  # the owner, last week
    for n in range(5):
        attempt(client, password="guess", address=f"198.51.100.{n}")
    assert_throttled(attempt(client, password="guess", address="198.51.100.99"))

    assert attempt(client, address="203.0.113.7").status_code == 200


def test_another_username_is_not_affected(client, app):
    Accounts(app, client).create("bob")
    for n in range(5):
        attempt(client, password="guess", address=f"198.51.100.{n}")

    assert attempt(client, username="bob", address="198.51.100.99").status_code == 200


def test_remembered_addresses_are_stored_as_digests(client, redis, prefix):
    attempt(client, address="203.0.113.7")

    keys = list(redis.scan_iter(match=prefix + "known:*"))
    assert len(keys) == 1
    assert "203.0.113.7" not in keys[0] and "alice" not in keys[0]
    assert 29 * 86400 < redis.ttl(keys[0]) <= 30 * 86400


def test_limits_reset_when_the_window_passes(make_app):
    client = make_app(SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS="2 per 1 second").test_client()
    attempt(client, password="guess")
    attempt(client, password="guess")
    assert_throttled(attempt(client))

    time.sleep(1.2)

    assert attempt(client).status_code == 200


def test_refresh_is_throttled_per_address(client):
    tokens = [attempt(client).get_json()["token"] for _ in range(4)]
    for token in tokens[:3]:
        assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 200

    assert_throttled(client.post(REFRESH, json={"refresh_token": tokens[3]["refresh_token"]}))
    other = client.post(
        REFRESH, json={"refresh_token": tokens[3]["refresh_token"]}, environ_base={"REMOTE_ADDR": "192.0.2.9"}
    )
    assert other.status_code == 200


def test_introspection_is_throttled_per_service(app, client):
    runner = app.test_cli_runner()
    headers = {}
    for name in ("billing", "reports"):
        secret = runner.invoke(args=["services", "add", name]).output.strip().splitlines()[-1]
        headers[name] = {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}
    for _ in range(3):
        assert client.post(INTROSPECT, headers=headers["billing"], json={"token": "x"}).status_code == 200

    assert_throttled(client.post(INTROSPECT, headers=headers["billing"], json={"token": "x"}))
    assert client.post(INTROSPECT, headers=headers["reports"], json={"token": "x"}).status_code == 200


def test_a_caller_claiming_a_services_name_spends_its_addresss_allowance_not_the_services(app, client):
    secret = app.test_cli_runner().invoke(args=["services", "add", "billing"]).output.strip().splitlines()[-1]
    genuine = {"Authorization": "Basic " + base64.b64encode(f"billing:{secret}".encode()).decode()}
    for name in ("billing", "billing", "billing", "reports"):
        claimed = {"Authorization": "Basic " + base64.b64encode(f"{name}:guess".encode()).decode()}
        response = client.post(
            INTROSPECT, headers=claimed, json={"token": "x"}, environ_base={"REMOTE_ADDR": "10.6.6.6"}
        )
        assert response.status_code == (401 if name == "billing" else 429)

    assert client.post(INTROSPECT, headers=genuine, json={"token": "x"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "limited"),
    [
        ("POST", SIGNIN, True),
        ("POST", REFRESH, True),
        ("POST", INTROSPECT, True),
        ("POST", "/api/v2/account/revoke/", True),
        ("GET", "/api/v2/account/me/", False),
        ("POST", "/api/v2/account/signout/", False),
        ("GET", "/healthz", False),
        ("GET", "/no/such/path", False),
    ],
)
def test_only_limited_views_go_through_the_limiter(app, method, path, limited):
    from signin.web.throttle import _no_limit_applies

    with app.test_request_context(path, method=method):
        assert _no_limit_applies() is not limited


def test_a_forged_forwarded_for_changes_nothing_without_trusted_proxies(client):
    for n in range(3):
        attempt(client, password="guess", **{"X-Forwarded-For": f"10.9.9.{n}"})

    assert_throttled(attempt(client, **{"X-Forwarded-For": "10.9.9.200"}))


def test_a_trusted_proxy_reports_the_client_address(make_app):
    client = make_app(SIGNIN_TRUSTED_PROXIES=1).test_client()
    for _ in range(3):
        attempt(client, password="guess", **{"X-Forwarded-For": "10.9.9.1"})

    assert_throttled(attempt(client, **{"X-Forwarded-For": "10.9.9.1"}))
    assert attempt(client, **{"X-Forwarded-For": "10.9.9.2"}).status_code == 200


def test_a_trusted_proxy_count_ignores_hops_it_did_not_add(make_app):
    client = make_app(SIGNIN_TRUSTED_PROXIES=1).test_client()
    for n in range(3):
        attempt(client, password="guess", **{"X-Forwarded-For": f"10.0.0.{n}, 10.9.9.1"})

    assert_throttled(attempt(client, **{"X-Forwarded-For": "10.0.0.77, 10.9.9.1"}))


def test_throttling_can_be_switched_off(make_app):
    client = make_app(RATELIMIT_ENABLED=False).test_client()

    statuses = {attempt(client, password="guess").status_code for _ in range(12)}

    assert statuses == {401}
