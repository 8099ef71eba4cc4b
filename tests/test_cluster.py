"""Redis Cluster: a user's sessions spread over every node, and all of it still holds.

Runs only against a cluster: ``SIGNIN_TEST_REDIS=cluster`` or a
``redis+cluster://`` REDIS_URL.
"""

from __future__ import annotations

import pytest

from signin.store.tokens import TokenStore, session_ref
from tests.conftest import PASSWORD, SIGNIN, Accounts, close_client
from tests.servers import RedisCluster

ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
SIGNOUT = "/api/v2/account/signout/"
ALICE = {"username": "alice", "password": PASSWORD}


@pytest.fixture(autouse=True)
def _cluster_only(redis_url):
    if not redis_url.startswith("redis+cluster://"):
        pytest.skip("needs Redis Cluster: set SIGNIN_TEST_REDIS=cluster")


def keys(redis, prefix):
    return sorted(redis.scan_iter(match=f"{prefix}*"))


def session_key(prefix, token):
    """Return the Redis key of a token's session: the digest of its selector."""
    return f"{prefix}s:{session_ref(token['access_token'].split('.')[0])}"


def test_sessions_on_every_node_still_work_as_one(app, client, accounts, alice, redis, prefix):
    tokens, nodes = [], set()
    while len(nodes) < len(redis.get_primaries()):
        assert len(tokens) < 40, "sessions kept landing on the same nodes"
        tokens.append(accounts.signin())
        nodes.add(redis.get_node_from_key(session_key(prefix, tokens[-1])).name)

    refreshed = client.post(REFRESH, json={"refresh_token": tokens[0]["refresh_token"]}).get_json()["token"]
    assert client.get(ME, headers=accounts.bearer(refreshed)).status_code == 200
    assert client.get(ME, headers=accounts.bearer(tokens[0])).status_code == 401

    # The 8-thread race is tests/test_refresh.py's, which the cluster run runs too.
    assert client.post(SIGNOUT, headers=accounts.bearer(tokens[-1]), json={"everywhere": True}).status_code == 204
    assert {client.get(ME, headers=accounts.bearer(token)).status_code for token in [refreshed, *tokens]} == {401}
    assert [key for key in keys(redis, prefix) if f"{prefix}s:" in key or f"{prefix}u:" in key] == []


def test_losing_nodes_is_503_never_500_and_heals_when_they_return(make_app, settings, request):
    with RedisCluster() as cluster:
        app = make_app({"REDIS_URL": cluster.url})
        accounts = Accounts(app, app.test_client())
        accounts.create("alice")
        tokens = [accounts.signin() for _ in range(12)]
        redis = app.extensions["redis"].client
        lost = cluster.nodes[0]

        def on_lost_node(token):
            return redis.get_node_from_key(session_key(settings["SIGNIN_REDIS_PREFIX"], token)).port == lost.port

        def me(token):
            return accounts.client.get(ME, headers=accounts.bearer(token)).status_code

        request.addfinalizer(lambda: close_client(redis))

        lost.kill()
        assert [me(token) for token in tokens] == [503 if on_lost_node(token) else 200 for token in tokens]
        assert {accounts.client.post(SIGNIN, json=ALICE).status_code for _ in range(5)} <= {200, 503}

        # Without replicas or persistence, the tokens that lived on the node are gone.
        lost.start()
        cluster.wait_until_ok()
        assert [me(token) for token in tokens] == [401 if on_lost_node(token) else 200 for token in tokens]
        assert accounts.client.post(SIGNIN, json=ALICE).status_code == 200

        cluster.stop()
        assert me(tokens[0]) == 503
        assert accounts.client.post(SIGNIN, json=ALICE).status_code == 503
        ready = accounts.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"] == {"database": "ok", "redis": "unavailable"}

        cluster.start()
        assert accounts.client.post(SIGNIN, json=ALICE).status_code == 200


def test_waiting_for_replicas_is_refused_on_a_cluster(redis):
    with pytest.raises(ValueError, match="not supported on Redis Cluster"):
        TokenStore(redis, min_replicas=1)
