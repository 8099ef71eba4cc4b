"""PostgreSQL outages: sign-in answers 503, tokens keep working, and the app heals by itself."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from signin.store.database import db
from tests.conftest import PASSWORD, SIGNIN, Accounts, assert_unavailable
from tests.servers import PostgresServer

pytestmark = pytest.mark.skipif(not PostgresServer.available(), reason="PostgreSQL binaries not found")

ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"
SIGNOUT = "/api/v2/account/signout/"
ALICE = {"username": "alice", "password": PASSWORD}


@pytest.fixture
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def app(make_app, postgres):  # overrides conftest's: a database this test may stop
    app = make_app({"SQLALCHEMY_DATABASE_URI": postgres.url})
    yield app
    with app.app_context():
        db.engine.dispose()


def test_postgres_down_is_503_while_tokens_keep_working_and_heals_by_itself(client, accounts, alice, postgres):
    token, other = accounts.signin(), accounts.signin()

    postgres.stop()
    assert_unavailable(client.post(SIGNIN, json=ALICE))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": "unavailable", "redis": "ok"}
    assert "database" in ready.get_json()["error_description"]
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200
    assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 200
    assert client.post(SIGNOUT, headers=accounts.bearer(other)).status_code == 204

    postgres.start()
    assert client.post(SIGNIN, json=ALICE).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_postgres_dying_under_a_request_that_holds_a_connection_is_503(app, client, accounts, alice, postgres):
    @app.before_request
    def take_a_connection_then_lose_the_database():
        db.session.execute(text("SELECT 1"))
        if app.config.get("KILL_DATABASE"):
            postgres.stop()

    app.config["KILL_DATABASE"] = True
    assert_unavailable(client.post(SIGNIN, json=ALICE))

    app.config["KILL_DATABASE"] = False
    postgres.start()
    assert client.post(SIGNIN, json=ALICE).status_code == 200


def test_a_pooled_connection_that_postgres_closed_is_replaced_before_use(client, accounts, alice, postgres):
    accounts.signin()  # leaves a connection in the pool
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND datname IS NOT NULL"
        ).fetchone()
    assert ended[0] >= 1

    assert client.post(SIGNIN, json=ALICE).status_code == 200


def test_a_frozen_postgres_costs_a_sign_in_its_timeout_not_a_hang(make_app, postgres):
    app = make_app({"SQLALCHEMY_DATABASE_URI": postgres.url, "SIGNIN_STORE_TIMEOUT": 0.5})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    token, other = accounts.signin(), accounts.signin()  # the pool holds a connection now
    client = app.test_client()

    with postgres.frozen():
        started = time.monotonic()
        assert_unavailable(client.post(SIGNIN, json=ALICE))
        took = time.monotonic() - started
        rested = time.monotonic()
        assert_unavailable(client.post(SIGNIN, json=ALICE))  # the database rests: at once
        at_once = time.monotonic() - rested
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 200
        assert client.post(REFRESH, json={"refresh_token": token["refresh_token"]}).status_code == 200
        assert client.post(SIGNOUT, headers=accounts.bearer(other)).status_code == 204

    assert took < 1.0
    assert at_once < 0.1
    deadline = time.monotonic() + 10
    while client.post(SIGNIN, json=ALICE).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
