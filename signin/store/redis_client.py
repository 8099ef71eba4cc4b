"""The process's one Redis client, from ``REDIS_URL`` or the embedded server.

Every call is bounded by ``SIGNIN_STORE_TIMEOUT``: a hung Redis costs a request
that long, once, before its 503. A refused or dropped connection is retried a
few times at once (a restarted server, a stale pooled connection); a timeout
is not, for it has spent the budget. Only idempotent commands reach Redis this
way: the token store's scripts recognise their own retry, and the limiter's
counter, which would count twice, gets no retries at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, current_app
from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from signin.settings import DEFAULTS
from signin.store import embedded
from signin.store.breaker import Breaker, FailFastRetry
from signin.store.embedded import EmbeddedRedis

RETRIES = 3


def limiter_options(timeout: float, breaker: Breaker) -> dict[str, Any]:
    """Return the options of Flask-Limiter's client: the same bounds and breaker, and no retries.

    The same keys for every URL: Flask-Limiter merges the options of every app it is bound to.
    """
    retry = FailFastRetry(NoBackoff(), 0, breaker)
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": retry}


@dataclass
class RedisState:
    client: Redis
    # The URL Flask-Limiter's storage understands for the same server.
    limiter_url: str
    # Rests the server after a timeout, for this client and the limiter's alike.
    breaker: Breaker
    # The embedded server, when REDIS_URL is unset: a request that finds it dead revives it.
    embedded: EmbeddedRedis | None = None


def client_from_url(
    url: str, timeout: float = DEFAULTS["SIGNIN_STORE_TIMEOUT"], breaker: Breaker | None = None
) -> Redis:
    """Build a pooled client for a redis://, rediss://, unix://,
    redis+cluster:// or redis+sentinel://host:port[,host:port]/service[/db] URL."""
    backoff = ExponentialWithJitterBackoff(cap=0.2, base=0.01)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": FailFastRetry(backoff, RETRIES, breaker or Breaker(timeout)),
    }
    scheme, _, rest = url.partition("://")
    if scheme == "redis+cluster":
        # redis-py types the cluster client apart, yet it answers every command the store sends.
        return cast(Redis, RedisCluster.from_url(f"redis://{rest}", **options))
    if scheme == "redis+sentinel":
        parts = urlsplit(url)
        hosts = [_host_port(node) for node in parts.netloc.rsplit("@", 1)[-1].split(",")]
        service, _, db = parts.path.strip("/").partition("/")
        sentinel = Sentinel(
            hosts,
            sentinel_kwargs={"socket_connect_timeout": timeout, "socket_timeout": timeout},
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


class RedisClient:
    """Flask extension owning the Redis client; state lives in app.extensions."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        url = app.config["REDIS_URL"]
        server = None
        if not url:
            server = embedded.join(app.instance_path)
            url = server.url
        breaker = Breaker(app.config["SIGNIN_STORE_TIMEOUT"])
        client = client_from_url(url, app.config["SIGNIN_STORE_TIMEOUT"], breaker)
        app.extensions["redis"] = RedisState(client, limiter_url(url), breaker, server)

    @property
    def client(self) -> Redis:
        return current_app.extensions["redis"].client


redis_client = RedisClient()
