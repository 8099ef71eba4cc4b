"""The addresses a user signed in from lately, kept as digests: the per-username limit exempts them."""

from __future__ import annotations

import hashlib

from redis import Redis

DAY = 86400


def _key(prefix: str, username_key: str, address: str) -> str:
    raw = f"{username_key}\0{address}".encode("utf-8", "surrogatepass")
    return f"{prefix}known:{hashlib.sha256(raw).hexdigest()}"


def remember(redis: Redis, prefix: str, username_key: str, address: str, days: int) -> None:
    """Note that the user named ``username_key`` signed in from ``address``, for ``days``."""
    redis.set(_key(prefix, username_key, address), 1, ex=days * DAY)


def known(redis: Redis, prefix: str, username_key: str, address: str) -> bool:
    """Tell whether the user named ``username_key`` signed in from ``address`` lately."""
    return bool(redis.exists(_key(prefix, username_key, address)))
