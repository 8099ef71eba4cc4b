"""The token store: issue, resolve, rotate and revoke opaque tokens in Redis.

A token is ``<selector>.<verifier>``: the selector (128 random bits) names its
session, the verifier (256 random bits) proves the token. Access and refresh
token of a session share the selector and differ in verifier. Redis holds
only SHA-256 digests, truncated (NIST SP 800-107 5.1), for every byte counts
when millions of sessions live in memory: a verifier's to 128 bits, so forging
one from a stolen copy of Redis takes 2**128 work; a selector's to 96 bits, for
it only names a key (two live sessions share one with odds under 10**-11 at a
billion sessions, and a shared key would refuse a token, never admit one).

- ``p s:<digest(selector)>``: the session, one JSON record holding who it
  belongs to and the digests of its current access and refresh verifiers (and,
  once rotated, of the refresh verifier before them, to recognise reuse). Its
  TTL is the longer token lifetime; the access token's expiry is in the record,
  and the refresh token's is its issue time plus its lifetime.
- ``p u:<user id>``: a sorted set of the user's session keys' digests, scored
  by expiry rounded up (so most rotations leave it alone), for
  signout-everywhere; expired entries are pruned on each write, and the set
  lives as long as its last session.

One key per session makes every change to it a single-key operation (a
rotation is one Lua script that checks and rewrites the record), so the store
is exact under concurrency and works on Redis Cluster; checking a token is one
``GET``, rotating one is one ``EVAL``.

With ``min_replicas``, a new or rotated pair is handed out only once that many
replicas hold it (Redis ``WAIT`` on the connection that wrote it), so a
failover cannot lose tokens a client already has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

from redis import Redis
from redis.cluster import RedisCluster

SELECTOR_BYTES = 16
VERIFIER_BYTES = 32
VERIFIER_DIGEST_BYTES = 16
SELECTOR_DIGEST_BYTES = 12
TOKEN_PATTERN = re.compile(r"([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")

# Replace a value only if it is still the one that was read.
COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""

# Add or move a session in its user's index, drop the expired ones, and keep
# the index until its last session's score.
INDEX = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return redis.call('EXPIREAT', KEYS[1], last[2] + 1)
"""

# Rotate a session whose current refresh digest is ARGV[1], issued less than
# ARGV[8] s ago: new access and refresh digests (ARGV[2], ARGV[3]), issued at
# ARGV[4] s = ARGV[5] ms, the access token living ARGV[6] s and the key
# ARGV[7] s. Returns {1, record as it was, record as it is} if rotated,
# {0, record} if the digest is another, nothing if there is no session or
# its refresh token has expired.
# Lua compares interned strings by identity, so the time taken does not
# depend on how much of a digest matches.
ROTATE = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local s = cjson.decode(value)
if s[8] ~= ARGV[1] then return {0, value} end
local now = tonumber(ARGV[4])
if now >= s[5] + tonumber(ARGV[8]) then return false end
s[5], s[6], s[7], s[8], s[9], s[10] = now, now + tonumber(ARGV[6]), ARGV[2], ARGV[3], s[8], tonumber(ARGV[5])
local rotated = cjson.encode(s)
redis.call('SET', KEYS[1], rotated, 'EX', ARGV[7])
return {1, value, rotated}
"""


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def random_parts(*sizes: int) -> list[str]:
    """Return random token parts of these many bytes each, URL-safe, from one system call.

    ``secrets.token_urlsafe`` per part would ask the kernel once each, and
    under waitress every system call also hands the GIL to another thread.
    """
    raw, parts = secrets.token_bytes(sum(sizes)), []
    for size in sizes:
        part, raw = raw[:size], raw[size:]
        parts.append(_text(part))
    return parts


def digest(value: str, size: int = VERIFIER_DIGEST_BYTES) -> str:
    """Return the SHA-256 digest of a token part, truncated to ``size`` bytes, as Redis holds it."""
    return _text(hashlib.sha256(value.encode("ascii")).digest()[:size])


def session_ref(selector: str) -> str:
    """Return the name of a selector's session: the digest its Redis key holds."""
    return digest(selector, SELECTOR_DIGEST_BYTES)


def _split(token: str) -> tuple[str, str] | None:
    match = TOKEN_PATTERN.fullmatch(token)
    return (session_ref(match[1]), digest(match[2])) if match else None


class Session(NamedTuple):
    """A session as Redis holds it: whose it is, and the digests of its live tokens.

    A named tuple, not a frozen dataclass: one is built on every token check,
    and a tuple is built several times faster.
    """

    ref: str  # digest of the selector: the session's key
    user_id: int
    username: str
    client_id: str
    scope: str
    issued_at: int  # of the current access token
    expires_at: int  # of the current access token
    access_digest: str
    refresh_digest: str
    previous_refresh_digest: str = ""
    rotated_at_ms: int = 0

    @property
    def public_id(self) -> str:
        """Name the session in logs: stable across rotation, useless to anyone who reads it."""
        return digest(self.ref)[:12]

    def dump(self) -> str:
        fields = [
            self.user_id,
            self.username,
            self.client_id,
            self.scope,
            self.issued_at,
            self.expires_at,
            self.access_digest,
            self.refresh_digest,
        ]
        if self.rotated_at_ms:
            fields += [self.previous_refresh_digest, self.rotated_at_ms]
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def load(cls, ref: str, value: str) -> Session:
        return cls(ref, *json.loads(value))


@dataclass(frozen=True)
class IssuedTokens:
    """A fresh token pair, shown to the client once."""

    access_token: str
    refresh_token: str
    expires_in: int
    session: Session


class RefreshRejected(Exception):
    """A refresh token that cannot be exchanged; ``reason`` says why."""

    def __init__(self, reason: str, session: Session | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session = session


class NotReplicated(Exception):
    """Fewer replicas than required acknowledged a write in time; nothing was handed out."""


class TokenStore:
    """Issue, resolve, rotate and revoke tokens; knows Redis, nothing of HTTP."""

    def __init__(
        self,
        redis: Redis,
        *,
        access_ttl: int = 604800,
        refresh_ttl: int = 604800,
        reuse_grace: int = 10,
        prefix: str = "signin:",
        min_replicas: int = 0,
        replica_timeout_ms: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min_replicas and isinstance(redis, RedisCluster):
            # WAIT covers one node's writes, and a user's index lives on another node.
            raise ValueError("min_replicas is not supported on Redis Cluster")
        if min_replicas and replica_timeout_ms <= 0:
            raise ValueError("replica_timeout_ms must be positive: WAIT 0 blocks forever")
        self.redis = redis
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.reuse_grace = reuse_grace
        self.prefix = prefix
        self.min_replicas = min_replicas
        self.replica_timeout_ms = replica_timeout_ms
        self.clock = clock

    @classmethod
    def from_config(cls, redis: Redis, config: Mapping[str, Any]) -> TokenStore:
        """Return a store over ``redis`` set up from checked settings (``signin.settings``)."""
        return cls(
            redis,
            access_ttl=config["SIGNIN_ACCESS_TOKEN_TTL"],
            refresh_ttl=config["SIGNIN_REFRESH_TOKEN_TTL"],
            reuse_grace=config["SIGNIN_REFRESH_REUSE_GRACE"],
            prefix=config["SIGNIN_REDIS_PREFIX"],
            min_replicas=config["SIGNIN_REDIS_MIN_REPLICAS"],
            replica_timeout_ms=config["SIGNIN_REDIS_REPLICA_TIMEOUT_MS"],
        )

    def issue(self, user_id: int, username: str, client_id: str, scope: str) -> IssuedTokens:
        """Start a new session for a user and return its first token pair."""
        selector, access, refresh = random_parts(SELECTOR_BYTES, VERIFIER_BYTES, VERIFIER_BYTES)
        now = int(self.clock())
        session = Session(
            ref=session_ref(selector),
            user_id=user_id,
            username=username,
            client_id=client_id,
            scope=scope,
            issued_at=now,
            expires_at=now + self.access_ttl,
            access_digest=digest(access),
            refresh_digest=digest(refresh),
        )
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._session_key(session.ref), session.dump(), ex=self._ttl(session))
            self._index(pipe, session)
            self._wait(pipe)
            replicated = self._replicated(pipe.execute())
        if not replicated:
            # The client never sees these tokens, so they need not outlive the refusal.
            self.revoke_session(session)
            raise NotReplicated()
        return IssuedTokens(f"{selector}.{access}", f"{selector}.{refresh}", self.access_ttl, session)

    def resolve(self, access_token: str) -> Session | None:
        """Return the session of a live access token, in one round trip."""
        session, presented = self._find(access_token)
        if session is None or not hmac.compare_digest(session.access_digest, presented):
            return None
        return session if session.expires_at > self.clock() else None

    def resolve_any(self, token: str) -> tuple[Session, int] | None:
        """Return the session of a live access or unspent refresh token, and when that token expires.

        One round trip.
        """
        session, presented = self._find(token)
        if session is None:
            return None
        if hmac.compare_digest(session.access_digest, presented):
            expires_at = session.expires_at
        elif hmac.compare_digest(session.refresh_digest, presented):
            expires_at = session.issued_at + self.refresh_ttl  # the key may outlive it
        else:
            return None
        return (session, expires_at) if expires_at > self.clock() else None

    def rotate(self, refresh_token: str) -> IssuedTokens:
        """Exchange a refresh token, exactly once, for a new pair of the same session, in one round trip.

        Raises ``RefreshRejected`` with reason ``unknown``, ``reused`` (a spent
        token within the grace, or a lost race: refused, session kept) or
        ``reuse_detected`` (a spent token after the grace: session revoked);
        ``NotReplicated`` with the session put back as it was.
        """
        parts = _split(refresh_token)
        if parts is None:
            raise RefreshRejected("unknown")
        ref, presented = parts
        access, refresh = random_parts(VERIFIER_BYTES, VERIFIER_BYTES)
        now_ms = int(self.clock() * 1000)
        now = now_ms // 1000
        key, digests = self._session_key(ref), (digest(access), digest(refresh))
        reply, replicated = self._write(
            "EVAL",
            ROTATE,
            1,
            key,
            presented,
            *digests,
            now,
            now_ms,
            self.access_ttl,
            self._lifetime(),
            self.refresh_ttl,
        )
        if reply is None:
            raise RefreshRejected("unknown")
        rotated, value, *written = reply
        old = Session.load(ref, value)
        if not rotated:
            self._refuse(old, presented, now_ms)
        new = Session.load(ref, written[0])
        if replicated and self._index_score(new) != self._index_score(old):
            with self.redis.pipeline(transaction=False) as pipe:
                self._index(pipe, new)
                self._wait(pipe)
                replicated = self._replicated(pipe.execute())
        if not replicated:
            # No client will see the new pair: the presented token works again.
            self.redis.eval(COMPARE_AND_SET, 1, key, written[0], value, self._ttl(old))
            raise NotReplicated()
        selector = refresh_token.split(".")[0]
        return IssuedTokens(f"{selector}.{access}", f"{selector}.{refresh}", self.access_ttl, new)

    def _refuse(self, session: Session, presented: str, now_ms: int) -> NoReturn:
        """Say why a refresh token that is not the session's current one was refused."""
        if hmac.compare_digest(session.access_digest, presented):
            raise RefreshRejected("unknown", session)  # a mix-up, not a theft
        spent = hmac.compare_digest(session.previous_refresh_digest, presented)
        if spent and now_ms - session.rotated_at_ms < self.reuse_grace * 1000:
            raise RefreshRejected("reused", session)
        # A spent token after the grace, or an older one: assume theft.
        self.revoke_session(session)
        raise RefreshRejected("reuse_detected", session)

    def revoke_session(self, session: Session) -> None:
        """Kill a session: its access and refresh token stop working at once."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._session_key(session.ref))
            pipe.zrem(self._user_key(session.user_id), session.ref)
            pipe.execute()

    def revoke_token(self, token: str) -> Session | None:
        """Kill the session of a live access or refresh token, or of a spent refresh token."""
        session, presented = self._find(token)
        if session is None:
            return None
        known = (session.access_digest, session.refresh_digest, session.previous_refresh_digest)
        if not any(hmac.compare_digest(presented, candidate) for candidate in known):
            return None
        self.revoke_session(session)
        return session

    def revoke_user(self, user_id: int) -> int:
        """Kill every session of one user; return how many were live."""
        user_key = self._user_key(user_id)
        refs = self.redis.zrange(user_key, 0, -1)
        if not refs:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.delete(self._session_key(ref))
            # Only the refs we saw: a session added meanwhile stays findable.
            pipe.zrem(user_key, *refs)
            return sum(pipe.execute()[:-1])

    def session_count(self, user_id: int) -> int:
        """Return how many of a user's sessions are live."""
        # Index scores are rounded up, so a session only just expired may still be listed.
        refs = self.redis.zrange(self._user_key(user_id), int(self.clock()) + 1, "+inf", byscore=True)
        with self.redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.exists(self._session_key(ref))
            return sum(pipe.execute())

    def _find(self, token: str) -> tuple[Session | None, str]:
        """Return the session a token names, and the digest of the verifier it presents."""
        parts = _split(token)
        if parts is None:
            return None, ""
        value = self.redis.get(self._session_key(parts[0]))
        return (Session.load(parts[0], value) if value else None), parts[1]

    def _lifetime(self) -> int:
        # From the last issue or rotation, the key lives as long as the longer-lived of its two tokens.
        return max(self.access_ttl, self.refresh_ttl)

    def _ttl(self, session: Session) -> int:
        """Return the seconds a session's key has left to live."""
        return max(1, session.issued_at + self._lifetime() - int(self.clock()))

    def _index_score(self, session: Session) -> int:
        """Return a session's score in its user's index: its key's expiry, rounded up.

        Rounded up to an eighth of the key's lifetime, so that a rotation
        moves it (a second round trip) at most once in that time; as a score
        is never below its session's expiry, pruning by score keeps every
        live session findable.
        """
        step = max(1, self._lifetime() // 8)
        return -(-(session.issued_at + self._lifetime()) // step) * step

    def _index(self, pipe: Redis, session: Session) -> None:
        # One script, not four commands: a pipeline costs redis-py per command.
        key, score = self._user_key(session.user_id), self._index_score(session)
        pipe.execute_command("EVAL", INDEX, 1, key, session.ref, score, session.issued_at)

    def _write(self, *command: object) -> tuple[Any, bool]:
        """Run one write command; return its reply and whether enough replicas acknowledged it."""
        if not self.min_replicas:
            return self.redis.execute_command(*command), True
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.execute_command(*command)
            self._wait(pipe)
            results = pipe.execute()
        return results[0], self._replicated(results)

    def _wait(self, pipe: Redis) -> None:
        # Last in the pipeline: the offset WAIT waits for covers every write before it.
        if self.min_replicas:
            pipe.wait(self.min_replicas, self.replica_timeout_ms)

    def _replicated(self, results: list) -> bool:
        return not self.min_replicas or results[-1] >= self.min_replicas

    def _session_key(self, ref: str) -> str:
        return f"{self.prefix}s:{ref}"

    def _user_key(self, user_id: int) -> str:
        return f"{self.prefix}u:{user_id}"
