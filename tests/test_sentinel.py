"""Redis Sentinel: a failover answers 503, heals by itself, and loses no token a client holds.

The app waits for one replica (``SIGNIN_REDIS_MIN_REPLICAS=1``) before it hands
out a token pair.
"""

from __future__ import annotations

import time

import pytest

from signin.store.database import db
from signin.store.tokens import token_store
from tests.conftest import PASSWORD, SIGNIN, UNAVAILABLE, Accounts
from tests.servers import RedisSentinelSetup

ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
ALICE = {"username": "alice", "password": PASSWORD}
DEADLINE = 30.0


@pytest.fixture
def sentinel():
    with RedisSentinelSetup() as setup:
        yield setup


@pytest.fixture
def app(make_app, sentinel):  # overrides conftest's: Redis behind sentinels
    app = make_app({"REDIS_URL": sentinel.url, "SIGNIN_REDIS_MIN_REPLICAS": 1})
    yield app
    with app.app_context():
        db.drop_all()
    app.extensions["redis"].client.close()


def until_not_503(request):
    """Repeat a request while it answers 503 (always the same JSON), for at most DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while (response := request()).status_code == 503:
        assert response.get_json() == UNAVAILABLE
        assert time.monotonic() < deadline, "still 503 at the deadline"
        time.sleep(0.1)
    return response


def test_a_failover_is_503_then_heals_by_itself_keeping_every_token(client, accounts, alice, sentinel):
    tokens = [accounts.signin() for _ in range(5)]

    sentinel.kill_primary()
    refused = client.post(SIGNIN, json=ALICE)
    assert refused.status_code == 503
    assert refused.get_json() == UNAVAILABLE
    assert until_not_503(lambda: client.get(ME, headers=accounts.bearer(tokens[0]))).status_code == 200
    sentinel.wait_for_failover()

    # The promoted replica has no replica of its own to hold a new pair yet.
    assert client.post(SIGNIN, json=ALICE).get_json() == UNAVAILABLE
    sentinel.primary.start()  # the sentinels make it the new primary's replica
    assert until_not_503(lambda: client.post(SIGNIN, json=ALICE)).status_code == 200

    assert [client.get(ME, headers=accounts.bearer(token)).status_code for token in tokens] == [200] * 5
    # A replica starved of CPU may miss the 500 ms WAIT: 503, and the same token works when retried.
    refresh = until_not_503(lambda: client.post(REFRESH, json={"refresh_token": tokens[0]["refresh_token"]}))
    assert refresh.status_code == 200


def test_without_a_replica_nothing_is_handed_out_and_refresh_can_be_retried(app, client, accounts, alice, sentinel):
    token = accounts.signin()
    sentinel.replica.stop()

    refused = client.post(SIGNIN, json=ALICE)
    assert refused.status_code == 503
    assert refused.get_json() == UNAVAILABLE
    with app.app_context():
        assert token_store().session_count(alice) == 1
    refresh = client.post(REFRESH, json={"refresh_token": token["refresh_token"]})
    assert refresh.get_json() == UNAVAILABLE
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200

    sentinel.replica.start()
    # The refused refresh left its token usable, so the client retries with the same one.
    retried = until_not_503(lambda: client.post(REFRESH, json={"refresh_token": token["refresh_token"]}))
    assert retried.status_code == 200
    assert client.get(ME, headers=accounts.bearer(retried.get_json()["token"])).status_code == 200
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401


def test_throttling_works_through_the_sentinels(make_app, sentinel):
    limited = {"RATELIMIT_ENABLED": True, "SIGNIN_LIMIT_SIGNIN_PER_ADDRESS": "2 per minute"}
    app = make_app({"REDIS_URL": sentinel.url, **limited})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")

    statuses = [accounts.client.post(SIGNIN, json=ALICE).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    with app.app_context():
        db.drop_all()
