"""GET /metrics: exact counts of security events, outages and latencies, and nothing personal."""

from __future__ import annotations

import base64

import pytest
from prometheus_client.parser import text_string_to_metric_families

from signin import create_app
from signin.rules.services import add_service
from signin.store.database import db
from tests.conftest import PASSWORD, SIGNIN
from tests.servers import RedisServer, free_port

METRICS = "/metrics"
REFRESH = "/api/v2/account/refresh/"
SIGNOUT = "/api/v2/account/signout/"
REVOKE = "/api/v2/account/revoke/"
ME = "/api/v2/account/me/"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client) -> tuple[str, Samples]:
    """Return the exposition text and its samples, keyed by name and sorted labels."""
    response = client.get(METRICS)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def app(make_app, redis_server):  # overrides conftest's: throttling on, a Redis this test may stop
    app = make_app(
        {
            "REDIS_URL": redis_server.url,
            "RATELIMIT_ENABLED": True,
            "SIGNIN_LIMIT_REFRESH_PER_ADDRESS": "2 per minute",
            "SIGNIN_REFRESH_REUSE_GRACE": 0,
        }
    )
    yield app
    with app.app_context():
        db.drop_all()


@pytest.mark.parametrize("path", [METRICS, METRICS + "/"])
def test_metrics_are_prometheus_text_with_and_without_trailing_slash(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "Location" not in response.headers
    assert list(text_string_to_metric_families(response.get_data(as_text=True)))


def test_every_outcome_starts_at_zero(client):
    _, samples = scrape(client)

    for outcome in ("success", "unknown_user", "bad_password", "disabled"):
        assert value(samples, "signin_signins_total", outcome=outcome) == 0
    for kind in ("signout", "everywhere", "service"):
        assert value(samples, "signin_revocations_total", kind=kind) == 0
    for store in ("redis", "database"):
        assert value(samples, "signin_store_errors_total", store=store) == 0
    assert value(samples, "signin_refresh_reuse_detections_total") == 0


def test_known_traffic_is_counted_exactly(app, client, accounts, alice, redis_server):
    with app.app_context():
        secret = add_service("billing")
    service = {"Authorization": "Basic " + base64.b64encode(f"billing:{secret}".encode()).decode()}
    first, second = accounts.signin(), accounts.signin()
    assert client.post(SIGNIN, json={"username": "alice", "password": "wrong"}).status_code == 401
    assert client.post(SIGNIN, json={"username": "nobody", "password": PASSWORD}).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).status_code == 200
    assert client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).status_code == 401  # reuse
    assert client.post(REFRESH, json={"refresh_token": second["refresh_token"]}).status_code == 429
    assert client.post(SIGNOUT, headers=accounts.bearer(second)).status_code == 204
    third = accounts.signin()
    assert client.post(REVOKE, headers=service, json={"token": third["access_token"]}).status_code == 200
    assert client.post(REVOKE, headers=service, json={"token": "no-such-token"}).status_code == 200
    fourth = accounts.signin()
    assert client.post(SIGNOUT, headers=accounts.bearer(fourth), json={"everywhere": True}).status_code == 204
    redis_server.stop()
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 503

    text, samples = scrape(client)

    assert value(samples, "signin_signins_total", outcome="success") == 4
    assert value(samples, "signin_signins_total", outcome="bad_password") == 1
    assert value(samples, "signin_signins_total", outcome="unknown_user") == 1
    assert value(samples, "signin_signins_total", outcome="disabled") == 0
    assert value(samples, "signin_refreshes_total", outcome="success") == 1
    assert value(samples, "signin_refreshes_total", outcome="reuse_detected") == 1
    assert value(samples, "signin_refresh_reuse_detections_total") == 1
    assert value(samples, "signin_throttled_total", limit="refresh_per_address") == 1
    assert value(samples, "signin_revocations_total", kind="signout") == 1
    assert value(samples, "signin_revocations_total", kind="service") == 1
    assert value(samples, "signin_revocations_total", kind="everywhere") == 1
    assert value(samples, "signin_store_errors_total", store="redis") == 1
    assert value(samples, "signin_store_errors_total", store="database") == 0
    count = "signin_request_duration_seconds_count"
    assert value(samples, count, endpoint="account.signin", status="2xx") == 4
    assert value(samples, count, endpoint="account.signin", status="4xx") == 2
    assert value(samples, count, endpoint="account.signin", status="5xx") == 1
    assert value(samples, count, endpoint="account.refresh", status="4xx") == 2
    assert value(samples, count, endpoint="account.revoke", status="2xx") == 2
    secrets = [t[key] for t in (first, second, third, fourth) for key in ("access_token", "refresh_token")]
    for private in ["alice", "nobody", "billing", "127.0.0.1", PASSWORD, secret, *secrets]:
        assert private not in text


def test_a_database_outage_is_counted(settings):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    client = create_app({**settings, "SQLALCHEMY_DATABASE_URI": url}).test_client()

    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 503

    _, samples = scrape(client)
    assert value(samples, "signin_store_errors_total", store="database") == 1
    assert value(samples, "signin_store_errors_total", store="redis") == 0


def test_a_disabled_user_is_counted(client, accounts):
    accounts.create("mallory", active=False)

    client.post(SIGNIN, json={"username": "mallory", "password": PASSWORD})

    _, samples = scrape(client)
    assert value(samples, "signin_signins_total", outcome="disabled") == 1


def test_latency_is_labelled_by_endpoint_never_by_path(client):
    client.get("/healthz")
    client.get(ME, headers={"Authorization": "Bearer nope"})
    for n in range(3):
        client.get(f"/scanner/probe-{n}")

    text, samples = scrape(client)

    count = "signin_request_duration_seconds_count"
    assert value(samples, count, endpoint="health.healthz", status="2xx") == 1
    assert value(samples, count, endpoint="account.me", status="4xx") == 1
    assert value(samples, count, endpoint="unrouted", status="4xx") == 3
    assert "probe" not in text


def test_each_app_counts_on_its_own(settings, client, accounts, alice):
    accounts.signin()
    other = create_app(settings).test_client()

    _, mine = scrape(client)
    _, theirs = scrape(other)

    assert value(mine, "signin_signins_total", outcome="success") == 1
    assert value(theirs, "signin_signins_total", outcome="success") == 0


def test_metrics_are_in_the_openapi_document(client):
    operation = client.get("/api/v2/openapi.json").get_json()["paths"][METRICS]["get"]

    assert set(operation["responses"]["200"]["content"]) == {"text/plain"}
    assert "security" not in operation
