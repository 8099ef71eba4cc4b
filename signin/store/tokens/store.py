"""The token store's operations: issue, resolve, rotate and revoke tokens; list and end a user's sessions.

``TokenStore`` knows Redis and nothing of HTTP. Each operation is one round
trip where it can be (a token check is one ``GET``, a rotation one ``EVAL``),
touches one key at a time (so it runs on Redis Cluster), and is safe to send
twice. Its keys and scripts are described in ``signin.store.tokens``; a lost
rotation is undone by ``undo.LostRotations``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn, cast

import redis.exceptions
from redis import Redis
from redis.cluster import RedisCluster

from signin.store.breaker import RedisResting
from signin.store.outages import NotReplicated
from signin.store.tokens.digests import SELECTOR_BYTES, VERIFIER_BYTES, digest, random_parts, session_ref, split
from signin.store.tokens.records import RAW, USER_AGENT_LENGTH, Session, member_ref, public_id
from signin.store.tokens.scripts import COMPARE_AND_SET, EVICT, INDEX, REINDEX, ROTATE, TOUCH
from signin.store.tokens.undo import LostRotations

log = logging.getLogger(__name__)


def _strings(reply: Any) -> list[str]:
    """Return a list reply as the strings it is: the client decodes every answer (decode_responses)."""
    return cast(list[str], reply)


@dataclass(frozen=True)
class IssuedTokens:
    """A fresh token pair, shown to the client once, and the sessions its sign-in evicted over the cap."""

    access_token: str
    refresh_token: str
    expires_in: int
    session: Session
    evicted: list[str] = field(default_factory=list)  # public ids


# What a token is for (RFC 7662's token_type_hint values, and introspection's token_use).
ACCESS_TOKEN, REFRESH_TOKEN = "access_token", "refresh_token"


class LiveToken(NamedTuple):
    """A live token: its session, when it expires, and whether it is the access or the refresh token."""

    session: Session
    expires_at: int
    use: str


class RefreshRejected(Exception):
    """A refresh token that cannot be exchanged; ``reason`` says why."""

    def __init__(self, reason: str, session: Session | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session = session


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
        # Rotations whose answer was lost, to undo.
        self.lost = LostRotations(self)

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
            pipe.set(self.session_key(session.ref), session.dump(), ex=self._ttl(session))
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

    def resolve_any(self, token: str) -> LiveToken | None:
        """Return what a live access or unspent refresh token is: its session, when it expires, which of the two.

        One round trip (two, once every touch_seconds for an access token).
        """
        session, presented = self._find(token)
        if session is None:
            return None
        now = self.clock()
        if hmac.compare_digest(session.access_digest, presented):
            live = LiveToken(session, session.expires_at, ACCESS_TOKEN)
            if live.expires_at > now:
                self._touch(session, now)
        elif hmac.compare_digest(session.refresh_digest, presented):
            # The key may outlive it.
            ends = min(session.issued_at + self.refresh_ttl, self._ends(session.created_at, session.issued_at))
            live = LiveToken(session, ends, REFRESH_TOKEN)
        else:
            return None
        return live if live.expires_at > now else None

    def rotate(self, refresh_token: str) -> IssuedTokens:
        """Exchange a refresh token, exactly once, for a new pair of the same session, in one round trip.

        Raises ``RefreshRejected`` with reason ``unknown``, ``reused`` (a spent
        token within the grace, or a lost race: refused, session kept) or
        ``reuse_detected`` (a spent token after the grace: session revoked);
        ``NotReplicated`` with the session put back as it was. If Redis cannot
        be reached or does not answer in time, the rotation is undone in the
        background and the error raised: the token works again once Redis does.
        """
        parts = split(refresh_token)
        if parts is None:
            raise RefreshRejected("unknown")
        ref, presented = parts
        access, refresh = random_parts(VERIFIER_BYTES, VERIFIER_BYTES)
        now_ms = int(self.clock() * 1000)
        now = now_ms // 1000
        key, digests = self.session_key(ref), (digest(access), digest(refresh))
        arguments = (presented, *digests, now, now_ms, self.access_ttl, self._lifetime(), self.refresh_ttl)
        try:
            reply, replicated = self._write("EVAL", ROTATE, 1, key, *arguments, self.max_age, **RAW)
        except RedisResting:
            raise  # never sent: nothing to undo
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            self.lost.later(ref, presented, digests[1])
            raise
        if reply is None:
            raise RefreshRejected("unknown")
        outcome, value, *written = reply
        if not outcome and self.lost.undone_now(ref, presented):
            return self.rotate(refresh_token)  # the client's retry came before its lost rotation's undo
        if not outcome:
            self._refuse(Session.load(ref, value), presented, now_ms)
        old, new = (Session.load(ref, value), Session.load(ref, (written or [value])[0]))
        # After an undo, whose own move of the index entry may have been lost, the entry is moved, or put back.
        undone = bool(old.cancelled_digest)
        if replicated and (outcome == 2 or undone or self._index_score(new) != self._index_score(old)):
            try:
                with self.redis.pipeline(transaction=False) as pipe:
                    self.reindex(pipe, new, restore=undone)
                    self._wait(pipe)
                    replicated = self._replicated(pipe.execute())
            except redis.exceptions.RedisError:  # lost, or refused (a failover, full): never to reach the client
                self.lost.later(ref, presented, digests[1])  # rotated, but the client will not hear of it
                raise
        if not replicated:
            # No client will see the new pair: the presented token works again (and, but after
            # a retried write, whose first state is gone, its access token too).
            if outcome == 1:
                self.redis.eval(COMPARE_AND_SET, 1, key, written[0], value, self._ttl(old))
            else:
                try:
                    self.lost.undo(ref, presented, digests[1])
                except redis.exceptions.RedisError:
                    self.lost.later(ref, presented, digests[1])
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

    def revoke_session(self, session: Session) -> None:
        """Kill a session: its access and refresh token stop working at once."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.session_key(session.ref))
            # An index written before members carried a sign-in time holds the bare ref.
            pipe.zrem(self.user_key(session.user_id), session.member, session.ref)
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
        user_key = self.user_key(user_id)
        members = [member for member in _strings(self.redis.zrange(user_key, 0, -1)) if member_ref(member) != keep]
        if not members:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.delete(self.session_key(member_ref(member)))
            # Only the members we saw: a session added meanwhile stays findable.
            pipe.zrem(user_key, *members)
            return sum(pipe.execute()[:-1])

    def sessions(self, user_id: int) -> list[Session]:
        """Return a user's live sessions, newest first: one read of the index, one pipelined read per session."""
        user_key = self.user_key(user_id)
        members = _strings(self.redis.zrangebyscore(user_key, int(self.clock()) + 1, "+inf"))
        if not members:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.execute_command("GET", self.session_key(member_ref(member)), **RAW)
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
        parts = split(token)
        if parts is None:
            return None, ""
        value = cast(bytes | None, self.redis.execute_command("GET", self.session_key(parts[0]), **RAW))
        return (Session.load(parts[0], value) if value else None), parts[1]

    def _touch(self, session: Session, now: float) -> None:
        # A note of use, not part of the check: a Redis that refuses it (full, say) fails no request.
        if now - session.last_used_at >= self.touch_seconds:
            key = self.session_key(session.ref)
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
                pipe.exists(self.session_key(member_ref(member)))
            found = pipe.execute()
        gone = [member for member, exists in zip(members, found, strict=True) if not exists]
        key, cap = self.user_key(session.user_id), self.max_sessions
        return _strings(self.redis.eval(EVICT, 1, key, session.member, session.issued_at, cap, *gone))

    def _end_evicted(self, user_id: int, members: list[str]) -> list[str]:
        """End the sessions an index write marked as evicted; return the public ids of those that were live."""
        if not members:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.delete(self.session_key(member_ref(member)))
            pipe.zrem(self.user_key(user_id), *members)
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
        key, score, now = self.user_key(session.user_id), self._index_score(session), session.issued_at
        doubtful_before = now - self._shortest_life()
        pipe.execute_command("EVAL", INDEX, 1, key, session.member, score, now, self.max_sessions, doubtful_before)

    def reindex(self, pipe: Redis, session: Session, *, restore: bool = False) -> None:
        key, score = self.user_key(session.user_id), self._index_score(session)
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

    def session_key(self, ref: str) -> str:
        return f"{self.prefix}s:{ref}"

    def user_key(self, user_id: int) -> str:
        return f"{self.prefix}u:{user_id}"
