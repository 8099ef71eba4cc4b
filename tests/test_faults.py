"""Store outages: a 503 as JSON, never a 500, and recovery without a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import redis.exceptions

from signin import create_app
from signin.store.database import db
from signin.store.models import User
from signin.store.redis_client import client_from_url
from signin.store.tokens import RefreshRejected, TokenStore, token_store, undo
from tests.conftest import PASSWORD, SIGNIN, Accounts, Clock, assert_unavailable
from tests.faults import DroppingProxy, stalled
from tests.servers import HOST, RedisServer, free_port

DAY = 86400
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def app(make_app, redis_server):  # overrides conftest's: a Redis this test may stop
    app = make_app({"REDIS_URL": redis_server.url})
    yield app
    with app.app_context():
        db.drop_all()


def test_redis_down_is_503_and_recovers_by_itself(client, accounts, alice, redis_server):
    token = accounts.signin()

    redis_server.stop()
    assert_unavailable(client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}))
    assert_unavailable(client.get(ME, headers=accounts.bearer(token)))
    assert_unavailable(client.post("/api/v2/account/refresh/", json={"refresh_token": token["refresh_token"]}))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "unavailable"}
    assert client.get("/healthz").status_code == 200

    redis_server.start()
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_delete_that_cannot_reach_redis_leaves_the_user_disabled_to_be_deleted_again(make_app, redis_server):
    with DroppingProxy(redis_server.port) as proxy:
        app = make_app({"REDIS_URL": proxy.url})
        client = app.test_client()
        accounts = Accounts(app, client)
        accounts.create("alice")
        token = accounts.signin()
        proxy.refuse_connections()
        app.extensions["redis"].client.connection_pool.disconnect()

        refused = app.test_cli_runner().invoke(args=["users", "delete", "alice", "--yes"])
        assert (refused.exit_code, refused.output) == (
            1,
            "Error: Redis cannot be reached (ConnectionError): 'alice' is disabled, not deleted; run it again\n",
        )

        proxy.refuse_connections(False)
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 200  # Redis never heard of it
        assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 401
        deleted = app.test_cli_runner().invoke(args=["users", "delete", "alice", "--yes"])
        assert deleted.output.endswith("Deleted 'alice'; ended 1 session(s).\n")
        with app.app_context():
            assert User.find("alice") is None
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 401


def test_redis_down_with_throttling_on_is_503(make_app, redis_server):
    app = make_app({"REDIS_URL": redis_server.url, "RATELIMIT_ENABLED": True})
    Accounts(app, app.test_client()).create("alice")
    redis_server.stop()

    assert_unavailable(app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD}))

    redis_server.start()
    assert app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize("throttling", [False, True])
def test_database_down_is_503(settings, throttling):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": throttling})
    client = app.test_client()

    assert_unavailable(client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": "unavailable", "redis": "ok"}
    assert ready.get_json()["error"] == "temporarily_unavailable"


def test_no_free_database_connection_is_503(make_app):
    app = make_app({"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.1}})
    Accounts(app, app.test_client()).create("alice")
    with app.app_context(), db.engine.connect():  # the pool's only connection, held
        response = app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    assert_unavailable(response)


def test_an_unexpected_error_is_a_json_500(settings):
    app = create_app({**settings, "TESTING": False})

    @app.get("/boom")
    def boom():
        raise RuntimeError("a secret-bearing message")

    response = app.test_client().get("/boom")

    assert response.status_code == 500
    assert response.get_json() == {
        "error": "server_error",
        "error_description": "The server failed to handle the request.",
    }


def test_redis_lost_after_the_view_with_throttling_on_is_503(make_app, redis_server):
    # Flask-Limiter counts a failed sign-in after the view, in an after_request hook.
    # PROPAGATE_EXCEPTIONS off, as outside tests: Flask then hands the hook's error to the handlers.
    app = make_app({"REDIS_URL": redis_server.url, "RATELIMIT_ENABLED": True, "PROPAGATE_EXCEPTIONS": False})
    Accounts(app, app.test_client()).create("alice")
    # after_request hooks run last-registered first: this one runs before Flask-Limiter's.
    app.after_request_funcs[None].append(lambda response: redis_server.stop() or response)

    response = app.test_client().post(SIGNIN, json={"username": "alice", "password": "wrong"})

    assert_unavailable(response)


def test_a_redis_that_refuses_writes_is_503_while_reads_go_on(client, accounts, alice, redis_server):
    token = accounts.signin()
    admin = redis_server.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)  # every write is refused (OOM), every read answered

    assert_unavailable(client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}))
    assert_unavailable(client.post("/api/v2/account/refresh/", json={"refresh_token": token["refresh_token"]}))
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 200

    admin.config_set("maxmemory", 0)
    assert client.post("/api/v2/account/refresh/", json={"refresh_token": token["refresh_token"]}).status_code == 200


def test_a_redis_that_failed_to_save_is_503(make_app, tmp_path):
    # Redis refuses writes after a failed save only where it is set to save.
    with RedisServer(config="enable-protected-configs yes\nsave 3600 1") as server, server.client() as admin:
        app = make_app({"REDIS_URL": server.url})
        Accounts(app, app.test_client()).create("alice")
        gone = tmp_path / "gone"
        gone.mkdir()
        admin.config_set("dir", str(gone))
        gone.rmdir()
        admin.bgsave()
        while admin.info("persistence")["rdb_bgsave_in_progress"]:
            time.sleep(0.01)
        assert admin.info("persistence")["rdb_last_bgsave_status"] == "err"  # writes now get MISCONF

        assert_unavailable(app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD}))


def test_a_redis_error_in_a_pipeline_is_a_json_500_logged_in_redis_words_not_the_commands(make_app, settings, caplog):
    app = make_app({"TESTING": False})
    alice = Accounts(app, app.test_client()).create("alice")
    with app.app_context():
        token_store().redis.set(f"{settings['SIGNIN_REDIS_PREFIX']}u:{alice}", "not an index")

    response = app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 500
    assert response.get_json()["error"] == "server_error"
    [logged] = [record for record in caplog.records if record.name == "signin.web.errors"]
    assert "WRONGTYPE" in logged.getMessage()
    assert "Command #" not in caplog.text and "redis.call" not in caplog.text  # the command holds the session's digests


def test_a_rotation_whose_reply_was_lost_answers_its_own_retry(redis_server):
    # The connection drops after Redis ran the rotation; redis-py sends the same script again.
    with DroppingProxy(redis_server.port) as proxy:
        client = client_from_url(proxy.url, 1.0)
        store = TokenStore(client, prefix="drop:")
        issued = store.issue(1, "alice", "signin", "read")
        proxy.drop_next_reply()

        rotated = store.rotate(issued.refresh_token)

        assert proxy.dropped == 1
        assert store.resolve(rotated.access_token) == rotated.session
        with pytest.raises(RefreshRejected) as spent:
            store.rotate(issued.refresh_token)
        assert spent.value.reason == "reused"
        client.close()


def test_a_refresh_during_a_redis_stall_fails_fast_and_its_retry_succeeds(make_app, redis_server):
    app = make_app({"REDIS_URL": redis_server.url, "SIGNIN_STORE_TIMEOUT": 0.3})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    token = accounts.signin()
    refresh = {"refresh_token": token["refresh_token"]}

    with stalled(redis_server, 1.5):
        started = time.monotonic()
        assert_unavailable(app.test_client().post(REFRESH, json=refresh))
        assert time.monotonic() - started < 1.0

    # Redis ran the lost rotation as it woke, and its undo with it; Redis rests a moment (503), then the retry works.
    deadline = time.monotonic() + 5
    while (response := app.test_client().post(REFRESH, json=refresh)).status_code != 200:
        assert response.status_code == 503 and time.monotonic() < deadline
        time.sleep(0.1)
    fresh = response.get_json()["token"]
    assert app.test_client().get(ME, headers=accounts.bearer(fresh)).status_code == 200


def test_a_refresh_retried_the_moment_a_stalled_redis_answers_again_succeeds(redis_server):
    store = TokenStore(client_from_url(redis_server.url, 0.3), prefix="stall:")
    issued = store.issue(1, "alice", "signin", "read")

    with stalled(redis_server, 1.0), pytest.raises(redis.exceptions.TimeoutError):
        store.rotate(issued.refresh_token)
    # The undo was sent during the stall and ran as Redis woke, before this retry.
    rotated = store.rotate(issued.refresh_token)

    assert store.resolve(rotated.access_token) == rotated.session
    store.redis.close()


def test_a_refresh_whose_connection_died_after_the_write_succeeds_when_retried(redis_server):
    # Redis ran the rotation, then the connection dropped and Redis stayed out of reach (a crash, say).
    with DroppingProxy(redis_server.port) as proxy:
        store = TokenStore(client_from_url(proxy.url, 1.0), prefix="drop:")
        issued = store.issue(1, "alice", "signin", "read")
        proxy.drop_next_reply()
        proxy.refuse_connections()
        with pytest.raises(redis.exceptions.ConnectionError):
            store.rotate(issued.refresh_token)
        proxy.refuse_connections(False)

        rotated = store.rotate(issued.refresh_token)  # at once: before the background undo's next try

        assert store.resolve(rotated.access_token) == rotated.session
        store.redis.close()


def _refresh_lost_late_in_life(proxy: DroppingProxy, clock: Clock, *, replies_passed: int) -> tuple[TokenStore, str]:
    """Sign in, and six days later (late in the refresh token's life: its rotation moves the session's
    index entry) refresh while the connection drops after ``replies_passed`` replies and Redis stays out
    of reach a moment; return the store and the refresh token."""
    store = TokenStore(client_from_url(proxy.url, 1.0), prefix="drop:", clock=clock)
    issued = store.issue(1, "alice", "signin", "read")
    clock.now += 6 * DAY
    proxy.drop_next_reply(after=replies_passed)
    proxy.refuse_connections()
    with pytest.raises(redis.exceptions.ConnectionError):
        store.rotate(issued.refresh_token)
    proxy.refuse_connections(False)
    return store, issued.refresh_token


def test_a_session_whose_lost_rotation_was_undone_is_still_ended_by_signout_everywhere(redis_server):
    clock = Clock()
    with DroppingProxy(redis_server.port) as proxy:
        # Rotated in Redis, the index entry never moved.
        store, refresh_token = _refresh_lost_late_in_life(proxy, clock, replies_passed=0)
        rotated = store.rotate(refresh_token)  # undoes the lost rotation first
        clock.now += 2 * DAY  # past the sign-in's first expiry
        store.issue(1, "alice", "signin", "read")  # a write that drops the index's expired entries

        assert store.revoke_user(1) == 2
        assert store.resolve(rotated.access_token) is None
        store.redis.close()


def test_a_refresh_whose_connection_died_before_its_index_entry_moved_succeeds_when_retried(redis_server):
    clock = Clock()
    with DroppingProxy(redis_server.port) as proxy:
        # The rotation's reply arrives; the index entry's move is lost.
        store, refresh_token = _refresh_lost_late_in_life(proxy, clock, replies_passed=1)

        rotated = store.rotate(refresh_token)

        assert proxy.dropped == 1
        assert store.resolve(rotated.access_token) == rotated.session
        clock.now += 2 * DAY
        store.issue(1, "alice", "signin", "read")
        assert store.revoke_user(1) == 2
        store.redis.close()


class HeldThreads:
    """Stands for the token store's ``threading``: the background undos it starts wait until ``run``."""

    def __init__(self) -> None:
        self.targets: list[Callable[[], None]] = []

    def Thread(self, target: Callable[[], None], **_: object) -> SimpleNamespace:
        return SimpleNamespace(start=lambda: self.targets.append(target))

    def run(self) -> None:
        for target in self.targets:
            target()


def _retry_loses_its_undos_index_move(proxy: DroppingProxy, clock: Clock, held: HeldThreads) -> tuple[TokenStore, str]:
    """Lose a late refresh (``_refresh_lost_late_in_life``), its background undo held back; then the
    answer of the undo that the client's retry does first, and with it the undo's move of the index entry."""
    store, refresh_token = _refresh_lost_late_in_life(proxy, clock, replies_passed=0)
    assert len(held.targets) == 1
    store.redis.ping()  # a connection again, so that the replies counted are the retry's
    proxy.drop_next_reply(after=1)  # the retry's rotation answers (refused: spent); its undo runs, unanswered
    proxy.refuse_connections()
    with pytest.raises(redis.exceptions.ConnectionError):
        store.rotate(refresh_token)
    proxy.refuse_connections(False)
    return store, refresh_token


@pytest.fixture
def held(monkeypatch) -> HeldThreads:
    held = HeldThreads()
    monkeypatch.setattr(undo, "threading", SimpleNamespace(Thread=held.Thread, Lock=threading.Lock))
    return held


def test_the_next_rotation_after_an_undo_whose_index_move_was_lost_puts_the_entry_right(redis_server, held):
    clock = Clock()
    with DroppingProxy(redis_server.port) as proxy:
        store, refresh_token = _retry_loses_its_undos_index_move(proxy, clock, held)

        rotated = store.rotate(refresh_token)
        clock.now += 2 * DAY  # past the sign-in's first expiry
        store.issue(1, "alice", "signin", "read")  # a write that drops the index's expired entries

        assert proxy.dropped == 2
        assert store.revoke_user(1) == 2
        assert store.resolve(rotated.access_token) is None
        store.redis.close()


def test_an_undo_whose_index_move_was_lost_is_done_again_in_the_background(redis_server, held):
    clock = Clock()
    with DroppingProxy(redis_server.port) as proxy:
        store, refresh_token = _retry_loses_its_undos_index_move(proxy, clock, held)

        held.run()
        clock.now += 2 * DAY
        store.issue(1, "alice", "signin", "read")

        assert store.revoke_user(1) == 2
        with pytest.raises(RefreshRejected):
            store.rotate(refresh_token)  # ended with the rest
        store.redis.close()


def test_a_rotation_whose_index_move_redis_refuses_is_undone(redis_server, held):
    # Redis runs the rotation, then refuses to move the index entry: here for want of permission, after a
    # failover (READONLY) or at maxmemory (OOM) alike. The client hears an error: its token must work again.
    clock = Clock()
    with redis_server.client() as admin:
        admin.acl_setuser("signin", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"])
        store = TokenStore(
            client_from_url(f"redis://signin:secret@{HOST}:{redis_server.port}/0", 1.0), prefix="acl:", clock=clock
        )
        issued = store.issue(1, "alice", "signin", "read")
        clock.now += 6 * DAY  # late in the refresh token's life: its rotation moves the index entry
        admin.acl_setuser("signin", reset_keys=True, keys=["acl:s:*"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            store.rotate(issued.refresh_token)
        admin.acl_setuser("signin", reset_keys=True, keys=["*"])

        held.run()
        rotated = store.rotate(issued.refresh_token)

        assert store.resolve(rotated.access_token) == rotated.session
        store.redis.close()


def test_a_full_redis_answers_token_checks_and_signouts_even_when_their_use_is_due(make_app, redis_server):
    app = make_app({"REDIS_URL": redis_server.url, "SIGNIN_SESSION_TOUCH_SECONDS": 1})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    token = accounts.signin()
    with redis_server.client() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        with app.app_context():
            store = token_store()
            store.clock = lambda: time.time() + 60  # the session's last use is due to be written

        assert app.test_client().get(ME, headers=accounts.bearer(token)).status_code == 200
        assert app.test_client().post("/api/v2/account/signout/", headers=accounts.bearer(token)).status_code == 204
        admin.config_set("maxmemory", 0)
