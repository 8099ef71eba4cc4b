"""The token store: issue, resolve, rotate and revoke opaque tokens in Redis.

Keys (``p`` is the configured prefix; a digest is the token's SHA-256, never
the token itself):

- ``p at:<digest>``: a live access token, the JSON of its ``Session``.
- ``p rt:<digest>``: a refresh token; once spent it keeps its TTL and gains a
  ``<ms>|`` prefix, which is how reuse is recognised.
- ``p sess:<id>``: the session's current pair, ``"<refresh digest> <access
  digest>"``; every change to it is one atomic single-key operation.
- ``p user:<id>``: a sorted set of the user's session ids scored by expiry.

No operation touches two keys at once, so all of this works on Redis Cluster.

With ``min_replicas``, a new or rotated pair is handed out only once that many
replicas hold it (Redis ``WAIT`` on the connection that wrote it), so a
failover cannot lose tokens a client already has.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass

from redis import Redis
from redis.cluster import RedisCluster

TOKEN_BYTES = 32
SESSION_ID_BYTES = 16
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")

# Mark a live refresh token spent, keeping its TTL; return what it was.
CONSUME_REFRESH = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) == '[' then
  redis.call('SET', KEYS[1], ARGV[1] .. value, 'KEEPTTL')
end
return value
"""

# Replace the session's pair only if it still holds this refresh digest.
SWAP_PAIR = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return current
end
return false
"""


def digest(token: str) -> str:
    """Return the SHA-256 digest of a token, as it appears in Redis keys."""
    raw = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Session:
    """What a live token says about the session it belongs to."""

    session_id: str
    user_id: int
    username: str
    client_id: str
    scope: str
    issued_at: int
    expires_at: int

    def dump(self) -> str:
        return json.dumps(astuple(self), separators=(",", ":"))

    @classmethod
    def load(cls, value: str) -> Session:
        return cls(*json.loads(value))


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
            # WAIT covers one node's writes, and a session's keys span several nodes.
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
        self._consume = redis.register_script(CONSUME_REFRESH)
        self._swap = redis.register_script(SWAP_PAIR)

    def issue(self, user_id: int, username: str, client_id: str, scope: str) -> IssuedTokens:
        """Start a new session for a user and return its first token pair."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        issued, access, refresh = self._new_pair(session_id, user_id, username, client_id, scope)
        with self.redis.pipeline(transaction=False) as pipe:
            self._write_pair(pipe, issued, access, refresh)
            pipe.set(self._session_key(session_id), f"{digest(refresh)} {digest(access)}", ex=self._session_ttl)
            self._index(pipe, issued.session)
            self._wait(pipe)
            replicated = self._replicated(pipe.execute())
        if not replicated:
            # The client never sees these tokens, so they need not outlive the refusal.
            self.revoke_session(issued.session)
            raise NotReplicated()
        return issued

    def resolve(self, access_token: str) -> Session | None:
        """Return the session of a live access token, in one round trip."""
        if not TOKEN_PATTERN.fullmatch(access_token):
            return None
        value = self.redis.get(self._access_key(digest(access_token)))
        return Session.load(value) if value else None

    def resolve_refresh(self, refresh_token: str) -> Session | None:
        """Return the session of a live, unspent refresh token."""
        if not TOKEN_PATTERN.fullmatch(refresh_token):
            return None
        value = self.redis.get(self._refresh_key(digest(refresh_token)))
        return Session.load(value) if value and value.startswith("[") else None

    def rotate(self, refresh_token: str) -> IssuedTokens:
        """Exchange a refresh token, exactly once, for a new pair of the same session.

        Raises ``RefreshRejected`` with reason ``unknown``, ``revoked``,
        ``reused`` (within the grace: refused, session kept) or
        ``reuse_detected`` (after it: the whole session revoked). Raises
        ``NotReplicated`` with the session put back as it was.
        """
        if not TOKEN_PATTERN.fullmatch(refresh_token):
            raise RefreshRejected("unknown")
        old_refresh = digest(refresh_token)
        now_ms = int(self.clock() * 1000)
        value = self._consume(keys=[self._refresh_key(old_refresh)], args=[f"{now_ms}|"])
        if value is None:
            raise RefreshRejected("unknown")
        if not value.startswith("["):
            spent_ms, record = value.split("|", 1)
            session = Session.load(record)
            if now_ms - int(spent_ms) < self.reuse_grace * 1000:
                raise RefreshRejected("reused", session)
            self.revoke_session(session)
            raise RefreshRejected("reuse_detected", session)
        old = Session.load(value)
        issued, access, refresh = self._new_pair(old.session_id, old.user_id, old.username, old.client_id, old.scope)
        with self.redis.pipeline(transaction=False) as pipe:
            self._write_pair(pipe, issued, access, refresh)
            pipe.execute()
        previous = self._swap(
            keys=[self._session_key(old.session_id)],
            args=[old_refresh, f"{digest(refresh)} {digest(access)}", self._session_ttl],
        )
        if not previous:
            # Revoked while we rotated: the new pair must not outlive it.
            self._delete_pair(access, refresh)
            raise RefreshRejected("revoked", old)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._access_key(previous.split(" ")[1]))
            self._index(pipe, issued.session)
            self._wait(pipe)
            replicated = self._replicated(pipe.execute())
        if not replicated:
            self._unrotate(old, value, previous, access, refresh)
            raise NotReplicated()
        return issued

    def revoke_session(self, session: Session) -> None:
        """Kill a session: its current access and refresh token stop working."""
        pair = self.redis.getdel(self._session_key(session.session_id))
        with self.redis.pipeline(transaction=False) as pipe:
            if pair:
                refresh, access = pair.split(" ")
                pipe.delete(self._access_key(access))
                pipe.delete(self._refresh_key(refresh))
            pipe.zrem(self._user_key(session.user_id), session.session_id)
            pipe.execute()

    def revoke_access(self, access_token: str) -> Session | None:
        """Kill the session of an access token; return it, or None if not live."""
        session = self.resolve(access_token)
        if session is not None:
            self.revoke_session(session)
            self.redis.delete(self._access_key(digest(access_token)))
        return session

    def revoke_token(self, token: str) -> Session | None:
        """Kill the session any of its tokens (access, refresh, spent refresh) names."""
        session = self.revoke_access(token)
        if session is None and TOKEN_PATTERN.fullmatch(token):
            value = self.redis.get(self._refresh_key(digest(token)))
            if value:
                session = Session.load(value[value.index("[") :])
                self.revoke_session(session)
        return session

    def revoke_user(self, user_id: int) -> int:
        """Kill every session of one user; return how many were live."""
        user_key = self._user_key(user_id)
        session_ids = self.redis.zrange(user_key, 0, -1)
        if not session_ids:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.getdel(self._session_key(session_id))
            pairs = pipe.execute()
        with self.redis.pipeline(transaction=False) as pipe:
            for pair in filter(None, pairs):
                refresh, access = pair.split(" ")
                pipe.delete(self._access_key(access))
                pipe.delete(self._refresh_key(refresh))
            # Only the ids we saw: a session added meanwhile stays findable.
            pipe.zrem(user_key, *session_ids)
            pipe.execute()
        return sum(1 for pair in pairs if pair)

    def session_ids(self, user_id: int) -> list[str]:
        """Return the ids of a user's sessions that have not expired."""
        now = int(self.clock())
        return self.redis.zrangebyscore(self._user_key(user_id), now + 1, "+inf")

    def keys(self, pattern: str = "*") -> Iterable[str]:
        """Yield the store's keys matching a pattern (for operators and tests)."""
        return self.redis.scan_iter(match=f"{self.prefix}{pattern}")

    def _wait(self, pipe: Redis) -> None:
        # Last in the pipeline, after the EXPIRE that _index always replicates: the
        # offset WAIT waits for then covers every earlier write of this request.
        if self.min_replicas:
            pipe.wait(self.min_replicas, self.replica_timeout_ms)

    def _replicated(self, results: list) -> bool:
        return not self.min_replicas or results[-1] >= self.min_replicas

    def _unrotate(self, old: Session, record: str, previous: str, access: str, refresh: str) -> None:
        """Undo a rotation whose new pair no client will see; the old refresh token works again."""
        restored = self._swap(
            keys=[self._session_key(old.session_id)],
            args=[digest(refresh), previous, self._session_ttl],
        )
        if restored:
            # XX: a refresh token revoked meanwhile stays gone.
            self.redis.set(self._refresh_key(previous.split(" ")[0]), record, xx=True, keepttl=True)
        self._delete_pair(access, refresh)

    def _delete_pair(self, access: str, refresh: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._access_key(digest(access)))
            pipe.delete(self._refresh_key(digest(refresh)))
            pipe.execute()

    @property
    def _session_ttl(self) -> int:
        return max(self.access_ttl, self.refresh_ttl)

    def _new_pair(
        self, session_id: str, user_id: int, username: str, client_id: str, scope: str
    ) -> tuple[IssuedTokens, str, str]:
        now = int(self.clock())
        session = Session(session_id, user_id, username, client_id, scope, now, now + self.access_ttl)
        access = secrets.token_urlsafe(TOKEN_BYTES)
        refresh = secrets.token_urlsafe(TOKEN_BYTES)
        return IssuedTokens(access, refresh, self.access_ttl, session), access, refresh

    def _write_pair(self, pipe: Redis, issued: IssuedTokens, access: str, refresh: str) -> None:
        session = issued.session
        refresh_record = Session(*astuple(session)[:-1], expires_at=session.issued_at + self.refresh_ttl)
        pipe.set(self._access_key(digest(access)), session.dump(), ex=self.access_ttl)
        pipe.set(self._refresh_key(digest(refresh)), refresh_record.dump(), ex=self.refresh_ttl)

    def _index(self, pipe: Redis, session: Session) -> None:
        user_key = self._user_key(session.user_id)
        expires = session.issued_at + self._session_ttl
        pipe.zadd(user_key, {session.session_id: expires})
        pipe.zremrangebyscore(user_key, "-inf", session.issued_at)
        pipe.expire(user_key, self._session_ttl)

    def _access_key(self, token_digest: str) -> str:
        return f"{self.prefix}at:{token_digest}"

    def _refresh_key(self, token_digest: str) -> str:
        return f"{self.prefix}rt:{token_digest}"

    def _session_key(self, session_id: str) -> str:
        return f"{self.prefix}sess:{session_id}"

    def _user_key(self, user_id: int) -> str:
        return f"{self.prefix}user:{user_id}"
