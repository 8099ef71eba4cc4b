"""Prove that the real-server helpers in tests/servers.py start, stop and restart servers."""

from __future__ import annotations

import os
import pwd
import socket
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import redis
import redis.cluster
import redis.sentinel

from tests.servers import (
    HOST,
    MIN_REDIS_VERSION,
    PostgresServer,
    RedisCluster,
    RedisSentinelSetup,
    RedisServer,
    free_port,
)


def _temp_dirs(prefix: str) -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{prefix}*"))


def test_free_port_can_be_bound_on_loopback() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, free_port()))


def test_redis_server_stops_restarts_on_same_port_and_cleans_up() -> None:
    before = _temp_dirs("signin-redis-")
    with RedisServer() as server:
        port = server.port
        assert server.url == f"redis://{HOST}:{port}/0"
        with server.client() as client:
            assert client.ping()
            version = tuple(int(part) for part in client.info("server")["redis_version"].split(".")[:2])
            assert version >= MIN_REDIS_VERSION
            client.set("key", "value")

        server.stop()
        assert not server.running
        with server.client() as client, pytest.raises(redis.ConnectionError):
            client.ping()

        server.start()
        assert server.port == port
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            assert client.ping()
            assert client.get("key") is None  # no persistence

        server.kill()
        assert not server.running
        with server.client() as client, pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.ping()
        directory = server.directory
    assert not directory.exists()
    assert server.process is None
    assert _temp_dirs("signin-redis-") == before


def test_redis_server_failed_start_raises_and_cleans_up() -> None:
    with RedisServer() as running:
        clash = RedisServer(port=running.port)
        with pytest.raises(RuntimeError, match="exited with code"):
            clash.start()
        assert clash.process is None
        assert running.ping()


@pytest.mark.parametrize("use_redis_cli", [None, False], ids=["redis-cli", "commands"])
def test_redis_cluster_serves_keys_on_all_masters(use_redis_cli: bool | None) -> None:
    with RedisCluster(use_redis_cli=use_redis_cli) as cluster:
        assert len(set(cluster.ports)) == 3
        assert cluster.url == f"redis+cluster://{HOST}:{cluster.ports[0]}"
        with redis.cluster.RedisCluster(host=HOST, port=cluster.ports[0], decode_responses=True) as client:
            assert len(client.get_primaries()) == 3
            keys: dict[int, str] = {}
            for i in range(100):
                keys.setdefault(client.get_node_from_key(f"key:{i}").port, f"key:{i}")
            assert set(keys) == set(cluster.ports)
            for port, key in keys.items():
                assert client.set(key, str(port))
                assert client.get(key) == str(port)
        for node in cluster.nodes:
            with node.client() as direct:
                assert direct.get(keys[node.port]) == str(node.port)


def test_redis_cluster_restarts_with_its_slots() -> None:
    with RedisCluster() as cluster:
        with cluster.client() as client:
            client.set("kept", "no")  # no persistence: only the slot layout survives
        cluster.stop()
        cluster.start()
        with cluster.client() as client:
            assert client.get("kept") is None
            assert client.set("kept", "yes")
            assert len(client.get_primaries()) == 3


def test_redis_sentinel_discovers_master_and_fails_over() -> None:
    with RedisSentinelSetup() as setup:
        hosts = ",".join(f"{HOST}:{port}" for port in setup.sentinel_ports)
        assert setup.url == f"redis+sentinel://{hosts}/mymaster/0"
        sentinel = redis.sentinel.Sentinel(setup.sentinel_addresses, socket_timeout=1)
        with sentinel:
            assert sentinel.discover_master("mymaster") == (HOST, setup.primary.port)
            with sentinel.master_for("mymaster", decode_responses=True) as master:
                master.set("before", "1")
                assert master.execute_command("WAIT", 1, 2000) == 1

            setup.kill_primary()
            started = time.monotonic()
            setup.wait_for_failover(timeout=15)
            assert time.monotonic() - started < 10

            assert sentinel.discover_master("mymaster") == (HOST, setup.replica.port)
            with sentinel.master_for("mymaster", decode_responses=True) as master:
                assert master.set("after", "2")
                assert master.get("before") == "1"


@pytest.mark.skipif(not PostgresServer.available(), reason="PostgreSQL binaries not found")
def test_postgres_server_stops_and_restarts_with_its_data() -> None:
    before = _temp_dirs("signin-postgres-")
    with PostgresServer() as server:
        assert server.url == f"postgresql+psycopg://postgres@{HOST}:{server.port}/postgres"
        if os.geteuid() == 0:
            assert server.process is not None
            owner = Path(f"/proc/{server.process.pid}").stat().st_uid
            assert owner == pwd.getpwnam("postgres").pw_uid
        with psycopg.connect(server.dsn, connect_timeout=5, autocommit=True) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW listen_addresses").fetchone() == (HOST,)
            conn.execute("CREATE TABLE kept (id int)")

        server.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn, connect_timeout=2)

        server.start()
        with psycopg.connect(server.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        directory = server.directory
    assert not directory.exists()
    assert _temp_dirs("signin-postgres-") == before
