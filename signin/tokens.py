"""The token store: issue, resolve, rotate and revoke opaque tokens in Redis; list and end a user's sessions.

A token is ``<selector>.<verifier>``: the selector (128 random bits) names its
session, the verifier (256 random bits) proves the token. Access and refresh
token of a session share the selector and differ in verifier. Redis holds
only SHA-256 digests, truncated (NIST SP 800-107 5.1), for every byte counts
when millions of sessions live in memory: a verifier's to 128 bits, so forging
one from a stolen copy of Redis takes 2**128 work; a selector's to 96 bits, for
it only names a key (two live sessions share one with odds under 10**-11 at a
billion sessions, and a shared key would refuse a token, never admit one).

- ``p s:<digest(selector)>``: the session, one record (``signin.records``)
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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import redis.exceptions
from redis import Redis
from redis.client import NEVER_DECODE
from redis.cluster import RedisCluster

from signin.breaker import RedisResting, unguarded
from signin.records import CREATED_DIGITS, LUA_RECORD, REF_LENGTH, USER_AGENT_LENGTH, Session, member_ref, public_id

log = logging.getLogger(__name__)

SELECTOR_BYTES = 16
VERIFIER_BYTES = 32
VERIFIER_DIGEST_BYTES = 16
SELECTOR_DIGEST_BYTES = 12
TOKEN_PATTERN = re.compile(r"([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")
# How long a lost rotation's undo keeps trying to reach Redis, and how often.
UNDO_PATIENCE = 60.0
UNDO_INTERVAL = 0.5
# The option of a command whose reply holds a record: records are MessagePack, not text, so redis-py
# hands them over as bytes instead of decoding them like every other reply (decode_responses). It is
# the option redis-py's own DUMP sends, for the same reason.
RAW: dict[str, object] = {NEVER_DECODE: []}

# Replace a value only if it is still the one that was read.
COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""

# Mark the oldest live sessions (at time `now`) but `keep` beyond `cap` as being
# evicted (score -1): they stay findable and no longer count. Returns every
# member being evicted, for the caller to end.
LUA_EVICT_OLDEST = """
local function evict_oldest(key, keep, now, cap)
  local live = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
  local excess = #live - tonumber(cap)
  if excess > 0 then
    table.sort(live)
    for _, member in ipairs(live) do
      if excess == 0 then break end
      if member ~= keep then
        redis.call('ZADD', key, -1, member)
        excess = excess - 1
      end
    end
  end
  return redis.call('ZRANGEBYSCORE', key, '-inf', '(0')
end
"""

# Add session ARGV[1] to its user's index with score ARGV[2]; at time ARGV[3],
# drop the expired, and keep the index until its last session's score. Beyond
# ARGV[4] live sessions, if another live session signed in at or before ARGV[5]
# (its key may have expired before its rounded-up score), return {1, every
# such member}, for the caller to see which are gone (EVICT); else mark the
# oldest others as being evicted and return {0, every member being evicted}.
INDEX = (
    LUA_EVICT_OLDEST
    + f"""
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], last[2] + 1)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf')
if #live > tonumber(ARGV[4]) then
  local doubtful = {{}}
  for _, member in ipairs(live) do
    -- an older index's members are bare refs, their sign-in time unknown
    local created = #member > {REF_LENGTH} and tonumber(string.sub(member, 1, {CREATED_DIGITS}), 16)
    if member ~= ARGV[1] and not (created and created > tonumber(ARGV[5])) then
      table.insert(doubtful, member)
    end
  end
  if #doubtful > 0 then return {{1, doubtful}} end
end
return {{0, evict_oldest(KEYS[1], ARGV[1], ARGV[3], ARGV[4])}}
"""
)

# Drop members ARGV[4...], whose sessions are gone, from a user's index; then
# at time ARGV[2], mark the oldest live sessions but ARGV[1] beyond ARGV[3] as
# being evicted. Returns every member being evicted.
EVICT = (
    LUA_EVICT_OLDEST
    + """
for i = 4, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
return evict_oldest(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
"""
)

# Move a live member ARGV[1] to score ARGV[2] (not one being evicted; nor one
# gone, unless ARGV[4] is 1), at time ARGV[3] drop the expired, and keep the
# index as long as its last session.
REINDEX = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < 0 then return 0 end
if not score and ARGV[4] ~= '1' then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], last[2] + 1)
return 1
"""

# Rotate a session whose current refresh digest is ARGV[1]: new access and
# refresh digests ARGV[2], ARGV[3], at ARGV[4] s = ARGV[5] ms; the access
# token lives ARGV[6] s, the key ARGV[7] s, the refresh token ARGV[8] s, the
# session ARGV[9] s from its sign-in (0: no limit). Returns {1, record as it
# was, record as it is} if rotated; {2, record} if this very rotation was
# already made (the client's retry); {0, record} if the digest is another;
# nothing if there is no session or its refresh token or itself has expired.
# Lua compares interned strings by identity, so the time taken does not
# depend on how much of a digest matches.
ROTATE = (
    LUA_RECORD
    + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local s = load_record(value)
if s[F.refresh_digest] ~= ARGV[1] then
  if s[F.previous_refresh_digest] == ARGV[1] and s[F.access_digest] == ARGV[2] and s[F.refresh_digest] == ARGV[3] then
    return {2, value}
  end
  return {0, value}
end
if s[F.cancelled_digest] == ARGV[3] then return {0, value} end
local now = tonumber(ARGV[4])
if now >= s[F.issued_at] + tonumber(ARGV[8]) then return false end
local created = s[F.issued_at] - s[F.age_at_issue]
local ends = now + tonumber(ARGV[7])
if tonumber(ARGV[9]) > 0 then ends = math.min(ends, created + tonumber(ARGV[9])) end
if now >= ends then return false end
s[F.issued_at], s[F.access_lifetime] = now, math.min(now + tonumber(ARGV[6]), ends) - now
s[F.age_at_issue], s[F.used_after_issue] = now - created, 0
s[F.access_digest], s[F.refresh_digest] = ARGV[2], ARGV[3]
s[F.previous_refresh_digest], s[F.rotated_at_ms], s[F.cancelled_digest] = ARGV[1], tonumber(ARGV[5]), ''
local rotated = dump_record(s)
redis.call('SET', KEYS[1], rotated, 'EX', ends - now)
return {1, value, rotated}
"""
)

# Undo the rotation of refresh digest ARGV[1] to the new refresh digest ARGV[2],
# whose answer never reached the client: if it was made, the presented refresh
# token is current again (its access token stays dead); if not, it never will
# be. Safe in either order with the rotation, and twice. Returns the record
# it leaves, or nothing if the session is gone or has moved on.
UNDO_ROTATION = (
    LUA_RECORD
    + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local s = load_record(value)
if s[F.refresh_digest] == ARGV[2] and s[F.previous_refresh_digest] == ARGV[1] then
  s[F.refresh_digest], s[F.access_digest] = ARGV[1], ''
  s[F.previous_refresh_digest], s[F.rotated_at_ms] = '', 0
elseif s[F.refresh_digest] ~= ARGV[1] then
  return false
end
s[F.cancelled_digest] = ARGV[2]
local undone = dump_record(s)
redis.call('SET', KEYS[1], undone, 'KEEPTTL')
return undone
"""
)

# Note the use of access digest ARGV[1] at ARGV[2], unless noted less than ARGV[3] s ago.
TOUCH = (
    LUA_RECORD
    + """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local s = load_record(value)
local now = tonumber(ARGV[2])
if s[F.access_digest] ~= ARGV[1] or now - s[F.issued_at] - s[F.used_after_issue] < tonumber(ARGV[3]) then return 0 end
s[F.used_after_issue] = now - s[F.issued_at]
redis.call('SET', KEYS[1], dump_record(s), 'KEEPTTL')
return 1
"""
)


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


def _strings(reply: Any) -> list[str]:
    """Return a list reply as the strings it is: the client decodes every answer (decode_responses)."""
    return cast(list[str], reply)


def _split(token: str) -> tuple[str, str] | None:
    match = TOKEN_PATTERN.fullmatch(token)
    return (session_ref(match[1]), digest(match[2])) if match else None


@dataclass(frozen=True)
class IssuedTokens:
    """A fresh token pair, shown to the client once, and the sessions its sign-in evicted over the cap."""

    access_token: str
    refresh_token: str
    expires_in: int
    session: Session
    evicted: list[str] = field(default_factory=list)  # public ids


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
        max_age: int = 7776000,
        max_sessions: int = 100,
        touch_seconds: int = 300,
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
        self.max_age = max_age
        self.max_sessions = max_sessions
        self.touch_seconds = touch_seconds
        self.prefix = prefix
        self.min_replicas = min_replicas
        self.replica_timeout_ms = replica_timeout_ms
        self.clock = clock
        # Undos of rotations whose answer was lost, (ref, presented digest, new refresh digest), each
        # with when to forget it: kept until done, and a while after (see _undo_later).
        self._undos: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, redis: Redis, config: Mapping[str, Any]) -> TokenStore:
        """Return a store over ``redis`` set up from checked settings (``signin.settings``)."""
        return cls(
            redis,
            access_ttl=config["SIGNIN_ACCESS_TOKEN_TTL"],
            refresh_ttl=config["SIGNIN_REFRESH_TOKEN_TTL"],
            reuse_grace=config["SIGNIN_REFRESH_REUSE_GRACE"],
            max_age=config["SIGNIN_SESSION_MAX_AGE"],
            max_sessions=config["SIGNIN_MAX_SESSIONS_PER_USER"],
            touch_seconds=config["SIGNIN_SESSION_TOUCH_SECONDS"],
            prefix=config["SIGNIN_REDIS_PREFIX"],
            min_replicas=config["SIGNIN_REDIS_MIN_REPLICAS"],
            replica_timeout_ms=config["SIGNIN_REDIS_REPLICA_TIMEOUT_MS"],
        )

    def issue(
        self, user_id: int, username: str, client_id: str, scope: str, *, address: str = "", user_agent: str = ""
    ) -> IssuedTokens:
        """Start a new session for a user and return its first token pair; end their oldest beyond the cap."""
        selector, access, refresh = random_parts(SELECTOR_BYTES, VERIFIER_BYTES, VERIFIER_BYTES)
        now = int(self.clock())
        session = Session(
            ref=session_ref(selector),
            user_id=user_id,
            username=username,
            client_id=client_id,
            scope=scope,
            issued_at=now,
            access_lifetime=min(self.access_ttl, self._ends(now, now) - now),
            access_digest=digest(access),
            refresh_digest=digest(refresh),
            age_at_issue=0,
            used_after_issue=0,
            address=address,
            user_agent=user_agent[:USER_AGENT_LENGTH],
        )
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._session_key(session.ref), session.dump(), ex=self._ttl(session))
            self._index(pipe, session)
            self._wait(pipe)
            results = pipe.execute()
        if not self._replicated(results):
            # The client never sees these tokens, so they need not outlive the refusal.
            self.revoke_session(session)
            raise NotReplicated()
        evicted = self._end_evicted(user_id, self._being_evicted(session, results[1]))
        expires_in = session.expires_at - now
        return IssuedTokens(f"{selector}.{access}", f"{selector}.{refresh}", expires_in, session, evicted)

    def resolve(self, access_token: str) -> Session | None:
        """Return the session of a live access token, in one round trip (two, once every touch_seconds)."""
        session, presented = self._find(access_token)
        if session is None or not hmac.compare_digest(session.access_digest, presented):
            return None
        now = self.clock()
        if session.expires_at <= now:
            return None
        self._touch(session, now)
        return session

    def resolve_any(self, token: str) -> tuple[Session, int] | None:
        """Return the session of a live access or unspent refresh token, and when that token expires.

        One round trip (two, once every touch_seconds for an access token).
        """
        session, presented = self._find(token)
        if session is None:
            return None
        now = self.clock()
        if hmac.compare_digest(session.access_digest, presented):
            expires_at = session.expires_at
            if expires_at > now:
                self._touch(session, now)
        elif hmac.compare_digest(session.refresh_digest, presented):
            # The key may outlive it.
            expires_at = min(session.issued_at + self.refresh_ttl, self._ends(session.created_at, session.issued_at))
        else:
            return None
        return (session, expires_at) if expires_at > now else None

    def rotate(self, refresh_token: str) -> IssuedTokens:
        """Exchange a refresh token, exactly once, for a new pair of the same session, in one round trip.

        Raises ``RefreshRejected`` with reason ``unknown``, ``reused`` (a spent
        token within the grace, or a lost race: refused, session kept) or
        ``reuse_detected`` (a spent token after the grace: session revoked);
        ``NotReplicated`` with the session put back as it was. If Redis cannot
        be reached or does not answer in time, the rotation is undone in the
        background and the error raised: the token works again once Redis does.
        """
        parts = _split(refresh_token)
        if parts is None:
            raise RefreshRejected("unknown")
        ref, presented = parts
        access, refresh = random_parts(VERIFIER_BYTES, VERIFIER_BYTES)
        now_ms = int(self.clock() * 1000)
        now = now_ms // 1000
        key, digests = self._session_key(ref), (digest(access), digest(refresh))
        arguments = (presented, *digests, now, now_ms, self.access_ttl, self._lifetime(), self.refresh_ttl)
        try:
            reply, replicated = self._write("EVAL", ROTATE, 1, key, *arguments, self.max_age, **RAW)
        except RedisResting:
            raise  # never sent: nothing to undo
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            self._undo_later(ref, presented, digests[1])
            raise
        if reply is None:
            raise RefreshRejected("unknown")
        outcome, value, *written = reply
        if not outcome and self._undone_now(ref, presented):
            return self.rotate(refresh_token)  # the client's retry came before its lost rotation's undo
        if not outcome:
            self._refuse(Session.load(ref, value), presented, now_ms)
        old, new = (Session.load(ref, value), Session.load(ref, (written or [value])[0]))
        # After an undo, whose own move of the index entry may have been lost, the entry is moved, or put back.
        undone = bool(old.cancelled_digest)
        if replicated and (outcome == 2 or undone or self._index_score(new) != self._index_score(old)):
            try:
                with self.redis.pipeline(transaction=False) as pipe:
                    self._reindex(pipe, new, restore=undone)
                    self._wait(pipe)
                    replicated = self._replicated(pipe.execute())
            except redis.exceptions.RedisError:  # lost, or refused (a failover, full): never to reach the client
                self._undo_later(ref, presented, digests[1])  # rotated, but the client will not hear of it
                raise
        if not replicated:
            # No client will see the new pair: the presented token works again (and, but after
            # a retried write, whose first state is gone, its access token too).
            if outcome == 1:
                self.redis.eval(COMPARE_AND_SET, 1, key, written[0], value, self._ttl(old))
            else:
                try:
                    self._undo(ref, presented, digests[1])
                except redis.exceptions.RedisError:
                    self._undo_later(ref, presented, digests[1])
                    raise
            raise NotReplicated()
        selector = refresh_token.split(".")[0]
        return IssuedTokens(f"{selector}.{access}", f"{selector}.{refresh}", new.expires_at - now, new)

    def _refuse(self, session: Session, presented: str, now_ms: int) -> NoReturn:
        """Say why a refresh token that is not the session's current one was refused."""
        if hmac.compare_digest(session.access_digest, presented):
            raise RefreshRejected("unknown", session)  # a mix-up, not a theft
        if hmac.compare_digest(session.refresh_digest, presented):
            raise RefreshRejected("unknown", session)  # its rotation was lost and cancelled: try again
        spent = hmac.compare_digest(session.previous_refresh_digest, presented)
        if spent and now_ms - session.rotated_at_ms < self.reuse_grace * 1000:
            raise RefreshRejected("reused", session)
        # A spent token after the grace, or an older one: assume theft.
        self.revoke_session(session)
        raise RefreshRejected("reuse_detected", session)

    def _undo(self, ref: str, presented: str, refresh: str) -> None:
        """Undo a rotation whose answer was lost (see ``UNDO_ROTATION``), and index the session as it is left.

        The rotation may have made the session's key outlive its index entry,
        whose move was never sent: the entry moves (or comes back) with it.
        """
        undone = self.redis.execute_command("EVAL", UNDO_ROTATION, 1, self._session_key(ref), presented, refresh, **RAW)
        if undone:
            with self.redis.pipeline(transaction=False) as pipe:
                self._reindex(pipe, Session.load(ref, undone), restore=True)
                pipe.execute()

    def _undo_later(self, ref: str, presented: str, refresh: str) -> None:
        """Undo, in the background, a rotation whose answer was lost (``_undo``).

        Sent at once, past the breaker: unanswered, it still waits in Redis's
        socket and runs when Redis wakes. Until it is known done, and for
        UNDO_PATIENCE after (a retry whose rotation met the spent token just
        before it), a retry of the same token in this process does it first
        (``_undone_now``).
        """
        pending = (ref, presented, refresh)
        with self._lock:
            now = time.monotonic()
            self._undos = {undo: kept for undo, kept in self._undos.items() if kept > now}
            self._undos[pending] = math.inf

        def undo() -> None:
            deadline = time.monotonic() + UNDO_PATIENCE
            while pending in self._undos:
                try:
                    with unguarded():
                        self._undo(*pending)
                except redis.exceptions.RedisError:
                    # Sent but unanswered still lands once Redis wakes, a refusal (full, read-only) passes;
                    # sending again is harmless.
                    if time.monotonic() >= deadline:
                        log.warning("a lost rotation could not be undone: its refresh token stays spent")
                        return
                    time.sleep(UNDO_INTERVAL)
                    continue
                with self._lock:
                    if pending in self._undos:
                        self._undos[pending] = time.monotonic() + UNDO_PATIENCE
                return

        threading.Thread(target=undo, name="signin-undo-rotation", daemon=True).start()

    def _undone_now(self, ref: str, presented: str) -> bool:
        """Undo the lost rotations of ``presented`` this process knows of, now; tell whether there were any.

        One done already is done again, harmlessly; one that cannot be done stays for its next retry.
        """
        with self._lock:
            undos = [pending for pending in self._undos if pending[:2] == (ref, presented)]
        for pending in undos:
            self._undo(*pending)
            with self._lock:
                self._undos.pop(pending, None)
        return bool(undos)

    def revoke_session(self, session: Session) -> None:
        """Kill a session: its access and refresh token stop working at once."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._session_key(session.ref))
            # An index written before members carried a sign-in time holds the bare ref.
            pipe.zrem(self._user_key(session.user_id), session.member, session.ref)
            pipe.execute()

    def revoke_token(self, token: str) -> Session | None:
        """Kill the session of a live access or refresh token, or of a spent refresh token."""
        session, presented = self._find(token)
        if session is None:
            return None
        known = (session.access_digest, session.refresh_digest, session.previous_refresh_digest)
        if not any(hmac.compare_digest(presented, candidate) for candidate in known if candidate):
            return None
        self.revoke_session(session)
        return session

    def revoke_user(self, user_id: int, *, keep: str | None = None) -> int:
        """Kill every session of one user (but the session ``keep``, a ref); return how many were live."""
        user_key = self._user_key(user_id)
        members = [member for member in _strings(self.redis.zrange(user_key, 0, -1)) if member_ref(member) != keep]
        if not members:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.delete(self._session_key(member_ref(member)))
            # Only the members we saw: a session added meanwhile stays findable.
            pipe.zrem(user_key, *members)
            return sum(pipe.execute()[:-1])

    def sessions(self, user_id: int) -> list[Session]:
        """Return a user's live sessions, newest first: one read of the index, one pipelined read per session."""
        user_key = self._user_key(user_id)
        members = _strings(self.redis.zrangebyscore(user_key, int(self.clock()) + 1, "+inf"))
        if not members:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.execute_command("GET", self._session_key(member_ref(member)), **RAW)
            values = pipe.execute()
        now = self.clock()
        stored = [Session.load(member_ref(m), value) for m, value in zip(members, values, strict=True) if value]
        live = [session for session in stored if self._ends(session.created_at, session.issued_at) > now]
        return sorted(live, key=lambda session: (session.created_at, session.ref), reverse=True)

    def session_count(self, user_id: int) -> int:
        """Return how many of a user's sessions are live."""
        return len(self.sessions(user_id))

    def find_session(self, user_id: int, public: str) -> Session | None:
        """Return the live session of a user that ``public`` names (see ``public_id``), or None."""
        if not public.isascii():  # no id is, and compare_digest refuses to compare such text
            return None
        found = [session for session in self.sessions(user_id) if hmac.compare_digest(public_id(session.ref), public)]
        return found[0] if found else None

    def ends_at(self, session: Session) -> int:
        """Return when a session ends unless refreshed: its key's expiry."""
        return self._ends(session.created_at, session.issued_at)

    def _find(self, token: str) -> tuple[Session | None, str]:
        """Return the session a token names, and the digest of the verifier it presents."""
        parts = _split(token)
        if parts is None:
            return None, ""
        value = cast(bytes | None, self.redis.execute_command("GET", self._session_key(parts[0]), **RAW))
        return (Session.load(parts[0], value) if value else None), parts[1]

    def _touch(self, session: Session, now: float) -> None:
        # A note of use, not part of the check: a Redis that refuses it (full, say) fails no request.
        if now - session.last_used_at >= self.touch_seconds:
            key = self._session_key(session.ref)
            try:
                self.redis.eval(TOUCH, 1, key, session.access_digest, int(now), self.touch_seconds)
            except redis.exceptions.RedisError as refused:
                log.info("last use of a session not noted: %s", type(refused).__name__)

    def _being_evicted(self, session: Session, indexed: list) -> list[str]:
        """Return the members an index write (``INDEX``) marked as being evicted, once it knows which are gone.

        Only a session that signed in at least a key's shortest life ago may
        have expired while its (rounded-up) index entry lives on: those are
        looked up, for a session that is gone must not count towards the cap.
        """
        doubtful, members = indexed
        if not doubtful:
            return members
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(self._session_key(member_ref(member)))
            found = pipe.execute()
        gone = [member for member, exists in zip(members, found, strict=True) if not exists]
        key, cap = self._user_key(session.user_id), self.max_sessions
        return _strings(self.redis.eval(EVICT, 1, key, session.member, session.issued_at, cap, *gone))

    def _end_evicted(self, user_id: int, members: list[str]) -> list[str]:
        """End the sessions an index write marked as evicted; return the public ids of those that were live."""
        if not members:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.delete(self._session_key(member_ref(member)))
            pipe.zrem(self._user_key(user_id), *members)
            ended = pipe.execute()[:-1]
        return [public_id(member_ref(member)) for member, gone in zip(members, ended, strict=True) if gone]

    def _lifetime(self) -> int:
        # From the last issue or rotation, the key lives as long as the longer-lived of its two tokens.
        return max(self.access_ttl, self.refresh_ttl)

    def _shortest_life(self) -> int:
        """Return the least time a session's key lives from its sign-in."""
        return min(self._lifetime(), self.max_age) if self.max_age else self._lifetime()

    def _ends(self, created_at: int, issued_at: int) -> int:
        """Return when a session's key expires: its lifetime from ``issued_at``, capped by its maximum age."""
        ends = issued_at + self._lifetime()
        return min(ends, created_at + self.max_age) if self.max_age else ends

    def _ttl(self, session: Session) -> int:
        """Return the seconds a session's key has left to live."""
        return max(1, self._ends(session.created_at, session.issued_at) - int(self.clock()))

    def _index_score(self, session: Session) -> int:
        """Return a session's score in its user's index: its key's expiry, rounded up (but never past its maximum age).

        Rounded up to an eighth of the key's lifetime, so that a rotation
        moves it (a second round trip) at most once in that time; as a score
        is never below its session's expiry, pruning by score keeps every
        live session findable.
        """
        step = max(1, self._lifetime() // 8)
        rounded = -(-(session.issued_at + self._lifetime()) // step) * step
        return min(rounded, session.created_at + self.max_age) if self.max_age else rounded

    def _index(self, pipe: Redis, session: Session) -> None:
        # One script, not several commands: a pipeline costs redis-py per command.
        key, score, now = self._user_key(session.user_id), self._index_score(session), session.issued_at
        doubtful_before = now - self._shortest_life()
        pipe.execute_command("EVAL", INDEX, 1, key, session.member, score, now, self.max_sessions, doubtful_before)

    def _reindex(self, pipe: Redis, session: Session, *, restore: bool = False) -> None:
        key, score = self._user_key(session.user_id), self._index_score(session)
        pipe.execute_command("EVAL", REINDEX, 1, key, session.member, score, session.issued_at, int(restore))

    def _write(self, *command: object, **options: object) -> tuple[Any, bool]:
        """Run one write command; return its reply and whether enough replicas acknowledged it."""
        if not self.min_replicas:
            return self.redis.execute_command(*command, **options), True
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.execute_command(*command, **options)
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


__all__ = ["IssuedTokens", "NotReplicated", "RefreshRejected", "Session", "TokenStore"]
