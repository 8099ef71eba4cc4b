"""Many live sessions, fast: through ``TokenStore.issue`` in threads, or by a Lua script that mimics it."""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from bench.load import Request
from signin import settings
from signin.settings import DEFAULTS
from signin.store.tokens import IssuedTokens, TokenStore
from signin.store.tokens.records import index_member

ISSUE_THREADS = 8
FILL_BATCH = 20_000
# Fake users of bulk sessions get ids from here up, far from real users' ids.
FAKE_USER_BASE = 10_000_000

# What the bench's sessions say of their client: an address, and a user agent of 100 characters.
ADDRESS = "203.0.113.7"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.3"

# Write ARGV[3] sessions numbered from ARGV[2] under TokenStore's key names,
# each with the record ARGV[1] (one the store itself wrote), indexed by users
# of ARGV[4] sessions each, their members ARGV[5] (a sign-in time, as
# records.index_member writes it) and the ref. Bench only: it writes keys it
# was not passed, which Redis Cluster would refuse.
FILL = """
local record, first, count, per_user = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local created, prefix, ttl, base = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
for i = first, first + count - 1 do
  local user = base + math.floor(i / per_user)
  local ref = string.sub(redis.sha1hex('s' .. i), 1, 16)
  redis.call('SET', prefix .. 's:' .. ref, record, 'EX', ttl)
  redis.call('ZADD', prefix .. 'u:' .. user, redis.call('TIME')[1] + ttl, created .. ref)
  redis.call('EXPIRE', prefix .. 'u:' .. user, ttl)
end
return count
"""


def token_store(client: redis.Redis, **overrides: object) -> TokenStore:
    """Return a TokenStore set up as ``signin serve`` sets up its own, from the settings in effect and ``overrides``."""
    return TokenStore.from_config(client, settings.load(os.environ, overrides))


def issue_many(store: TokenStore, count: int, user_of: Callable[[int], tuple[int, str]]) -> list[IssuedTokens]:
    """Issue ``count`` sessions with ``TokenStore.issue`` from a few threads; session i belongs to user_of(i)."""
    client_id, scope = DEFAULTS["SIGNIN_CLIENTS"][0], DEFAULTS["SIGNIN_DEFAULT_SCOPE"]

    def issue(i: int) -> IssuedTokens:
        user_id, username = user_of(i)
        return store.issue(user_id, username, client_id, scope, address=ADDRESS, user_agent=USER_AGENT)

    with ThreadPoolExecutor(ISSUE_THREADS) as pool:
        return list(pool.map(issue, range(count), chunksize=256))


class RefreshPool:
    """Refresh requests of live sessions, each to be sent once, topped up before each run.

    The sessions belong to users numbered from ``first_user``, each holding as
    many as the store's cap on sessions per user allows: one user holding them
    all would see all but the newest ended by the cap.
    """

    def __init__(self, store: TokenStore, first_user: int, path: str) -> None:
        self.store, self.first_user, self.path = store, first_user, path
        self.issued = 0
        self.requests: deque[Request] = deque()

    def __len__(self) -> int:
        return len(self.requests)

    def top_up(self, count: int) -> None:
        """Issue sessions until at least ``count`` unsent refresh tokens wait."""
        missing = count - len(self.requests)
        if missing > 0:
            first, per_user = self.issued, self.store.max_sessions

            def user_of(i: int) -> tuple[int, str]:
                user_id = self.first_user + (first + i) // per_user
                return user_id, f"user{user_id}"

            issued = issue_many(self.store, missing, user_of)
            self.issued += missing
            self.requests.extend(Request.json(self.path, {"refresh_token": i.refresh_token}) for i in issued)

    def next(self) -> Request | None:
        """Take the next unsent request out of the pool; None once it is empty."""
        try:
            return self.requests.popleft()
        except IndexError:
            return None

    def write_bodies(self, path: Path) -> None:
        """Write every unsent body to ``path``, one a line, for wrk (``BENCH_BODIES`` in wrk.lua)."""
        path.write_text("".join(f"{request.body.decode()}\n" for request in self.requests))

    def spend(self, count: int) -> None:
        """Drop the first ``count`` requests, which wrk sent from the bodies file."""
        for _ in range(min(count, len(self.requests))):
            self.requests.popleft()


def fake_user(per_user: int) -> Callable[[int], tuple[int, str]]:
    """Return a user_of for issue_many: ``per_user`` sessions to each fake user."""

    def user_of(i: int) -> tuple[int, str]:
        user_id = FAKE_USER_BASE + i // per_user
        return user_id, f"user{user_id}"

    return user_of


def fill(client: redis.Redis, total: int, per_user: int, already: int = 0) -> float:
    """Top the store up to ``total`` Lua-written sessions (``already`` exist); return the seconds it took.

    Every one holds the record of a session the store issued itself, so the
    bytes are the store's; the key names are the Lua script's.
    """
    store = token_store(client)
    sample = issue_many(store, 1, fake_user(per_user))[0].session
    store.revoke_session(sample)
    script = client.register_script(FILL)
    ttl, created = store.ends_at(sample) - sample.issued_at, index_member(sample.created_at, "")
    started = time.perf_counter()
    for first in range(already, total, FILL_BATCH):
        count = min(FILL_BATCH, total - first)
        script(args=[sample.dump(), first, count, per_user, created, store.prefix, ttl, 2 * FAKE_USER_BASE])
    return time.perf_counter() - started


def payload_bytes(client: redis.Redis, issued: IssuedTokens, per_user: int) -> int:
    """Return the bytes of key names and values one session stores: the floor any layout must pay."""
    prefix = DEFAULTS["SIGNIN_REDIS_PREFIX"]
    session_key = f"{prefix}s:{issued.session.ref}"
    user_key = f"{prefix}u:{issued.session.user_id}"
    strings = len(session_key) + client.strlen(session_key)
    return strings + len(issued.session.member) + 8 + len(user_key) // per_user  # 8: the score


def memory_per_session(client: redis.Redis, store: TokenStore, count: int, per_user: int) -> dict:
    """Measure INFO used_memory before and after issuing ``count`` sessions."""
    before = client.info("memory")["used_memory"]
    started = time.perf_counter()
    issued = issue_many(store, count, fake_user(per_user))
    seconds = time.perf_counter() - started
    after = client.info("memory")["used_memory"]
    return {
        "sessions": count,
        "sessions_per_user": per_user,
        "issue_seconds": seconds,
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_session": (after - before) / count,
        "payload_bytes_per_session": payload_bytes(client, issued[0], per_user),
    }


def revoke_user_seconds(store: TokenStore, user_id: int, sessions: int, repeats: int) -> float:
    """Return the median time of ``revoke_user`` for a user holding ``sessions`` sessions."""
    times = []
    for _ in range(repeats):
        issue_many(store, sessions, lambda _i: (user_id, f"user{user_id}"))
        started = time.perf_counter()
        ended = store.revoke_user(user_id)
        times.append(time.perf_counter() - started)
        if ended != sessions:
            raise RuntimeError(f"revoke_user ended {ended} sessions, expected {sessions}")
    return statistics.median(times)


def round_trip_seconds(client: redis.Redis, repeats: int = 200) -> float:
    """Return the median time of one PING: the cost of one Redis round trip from redis-py."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def median_seconds(call: Callable[[], object], samples: int, per_sample: int = 1) -> float:
    """Return the median time of one ``call``: ``samples`` timings of ``per_sample`` calls each, divided back."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        for _ in range(per_sample):
            call()
        times.append((time.perf_counter() - started) / per_sample)
    return statistics.median(times)


def user_with_sessions(store: TokenStore, user_id: int, count: int) -> IssuedTokens:
    """Give a fresh user ``count`` sessions through ``TokenStore.issue``; return the first one's tokens."""
    store.revoke_user(user_id)
    issued = issue_many(store, count, lambda _i: (user_id, f"user{user_id}"))
    listed = len(store.sessions(user_id))
    if listed != count:
        raise RuntimeError(f"user {user_id} holds {listed} live sessions, expected {count}")
    return issued[0]
