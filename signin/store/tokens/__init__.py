"""The token store: opaque tokens in Redis, issued, checked, rotated and revoked; a user's sessions.

A token is ``<selector>.<verifier>``: the selector (128 random bits) names its
session, the verifier (256 random bits) proves the token. Access and refresh
token of a session share the selector and differ in verifier. Redis holds
only SHA-256 digests, truncated (NIST SP 800-107 5.1), for every byte counts
when millions of sessions live in memory: a verifier's to 128 bits, so forging
one from a stolen copy of Redis takes 2**128 work; a selector's to 96 bits, for
it only names a key (two live sessions share one with odds under 10**-11 at a
billion sessions, and a shared key would refuse a token, never admit one).

- ``p s:<digest(selector)>``: the session, one record (``records``)
  holding who it belongs to, where it came from and the digests of its
  current tokens. Its TTL runs from the last sign-in or rotation for the
  longer token lifetime, and never past the session's maximum age.
- ``p u:<user id>``: the user's index, a sorted set of their sessions scored
  by expiry rounded up (so most rotations leave it alone), for
  signout-everywhere, listing, and the cap on sessions per user; expired
  entries are pruned on each write, and the set lives as long as its last
  session. A session being evicted over the cap is scored -1 until its key
  is gone, so it stays findable and no longer counts; one whose key expired
  before its rounded-up score passed is looked up, not counted.

One key per session makes every change to it a single-key operation (a
rotation is one Lua script that checks and rewrites the record), so the store
is exact under concurrency and works on Redis Cluster; checking a token is one
``GET`` (and, once every ``touch_seconds``, one more to note the use);
rotating one is one ``EVAL``.

Every write is safe to send twice, for the client retries a dropped
connection: keys are random, and a rotation knows its own retry by the new
digests it carries. A rotation whose answer is lost altogether (Redis stalled
past the timeout) is undone in the background, so the client's refresh
token works again rather than counting as spent.

With ``min_replicas``, a new or rotated pair is handed out only once that many
replicas hold it (Redis ``WAIT`` on the connection that wrote it), so a
failover cannot lose tokens a client already has.

The pieces: ``digests`` (tokens and what Redis holds of them), ``records``
(the session record, for Python and Lua alike), ``scripts`` (the Lua
scripts), ``undo`` (lost rotations undone) and ``store`` (``TokenStore``, the
operations). ``init_app`` gives an app its store; ``token_store`` returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from redis import Redis

from signin.store.outages import NotReplicated
from signin.store.tokens.digests import digest, session_ref
from signin.store.tokens.records import RAW, Session
from signin.store.tokens.store import ACCESS_TOKEN, REFRESH_TOKEN, IssuedTokens, LiveToken, RefreshRejected, TokenStore

EXTENSION = "signin.tokens"


def init_app(app: Flask, redis: Redis, config: Mapping[str, Any] | None = None) -> TokenStore:
    """Give ``app`` a token store over ``redis``, set up from checked settings (``config``, else the app's)."""
    store = TokenStore.from_config(redis, app.config if config is None else config)
    app.extensions[EXTENSION] = store
    return store


def token_store() -> TokenStore:
    """Return the current app's token store."""
    return current_app.extensions[EXTENSION]


__all__ = [
    "ACCESS_TOKEN",
    "RAW",
    "REFRESH_TOKEN",
    "IssuedTokens",
    "LiveToken",
    "NotReplicated",
    "RefreshRejected",
    "Session",
    "TokenStore",
    "digest",
    "init_app",
    "session_ref",
    "token_store",
]
