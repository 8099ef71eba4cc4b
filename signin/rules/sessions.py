"""A user's sessions: ending them, and describing them as the account API and the CLI show them."""

from __future__ import annotations

import time

from signin.events import Event, Outcome, about, emit
from signin.store.tokens import REFRESH_TOKEN, IssuedTokens, LiveToken, RefreshRejected, Session, token_store


def rfc3339(seconds: int) -> str:
    """Return a Unix time as RFC 3339 in UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def refresh(refresh_token: str) -> IssuedTokens:
    """Exchange a refresh token, once, for a new pair of the same session; emitted either way.

    Raises ``RefreshRejected`` (see ``TokenStore.rotate``).
    """
    try:
        issued = token_store().rotate(refresh_token)
    except RefreshRejected as rejected:
        reused = rejected.reason == "reuse_detected"
        event, outcome = (Event.REFRESH_REUSE, Outcome.SESSION_REVOKED) if reused else (Event.REFRESH, Outcome.FAILURE)
        emit(event, outcome, reason=rejected.reason, **about(rejected.session))
        raise
    emit(Event.REFRESH, Outcome.SUCCESS, **about(issued.session))
    return issued


def introspect(token: str, hint: str | None = None) -> LiveToken | None:
    """Return what a live token is, for a service asking (RFC 7662); None for anything not live.

    A refresh token is not a bearer token: a resource server that checks only
    ``active`` must never accept one, so it is live here only when the caller
    says it asks about a refresh token. An access token is found whatever the
    hint (RFC 7662 2.1).
    """
    live = token_store().resolve_any(token)
    if live is None or (live.use == REFRESH_TOKEN and hint != REFRESH_TOKEN):
        return None
    return live


def revoke_token(token: str, *, service: str) -> None:
    """End the session a token belongs to, at a service's asking, whether or not there is one (RFC 7009)."""
    session = token_store().revoke_token(token)
    outcome = Outcome.SUCCESS if session else Outcome.NO_SUCH_TOKEN
    emit(Event.REVOKE, outcome, **about(session), service=service)


def sign_out(session: Session, *, everywhere: bool) -> int:
    """End the session, or every session of its user; return how many ended."""
    if everywhere:
        ended = token_store().revoke_user(session.user_id)
    else:
        token_store().revoke_session(session)
        ended = 1
    emit(Event.SIGNOUT, Outcome.SUCCESS, **about(session), everywhere=everywhere, sessions_ended=ended)
    return ended


def end_session(owner: Session, public_id: str) -> bool:
    """End the session of ``owner``'s user that ``public_id`` names; tell whether there was one."""
    found = token_store().find_session(owner.user_id, public_id)
    if found is None:
        return False
    token_store().revoke_session(found)
    emit(Event.SESSION_ENDED, Outcome.SUCCESS, **about(found), by_session=owner.public_id)
    return True


def end_other_sessions(owner: Session) -> int:
    """End every session of ``owner``'s user but ``owner``; return how many."""
    ended = token_store().revoke_user(owner.user_id, keep=owner.ref)
    emit(Event.SESSIONS_ENDED, Outcome.SUCCESS, **about(owner), sessions_ended=ended)
    return ended


def listed(owner: Session) -> list[dict[str, object]]:
    """Describe every live session of ``owner``'s user, newest first; ``owner``'s is ``current``."""
    return of_user(owner.user_id, current=owner.ref)


def of_user(user_id: int, *, current: str | None = None) -> list[dict[str, object]]:
    """Describe every live session of a user, newest first; the session ``current`` (a ref) is ``current``."""
    store = token_store()
    return [
        {
            "id": session.public_id,
            "client_id": session.client_id,
            "scope": session.scope,
            "created_at": rfc3339(session.created_at),
            "last_used_at": rfc3339(session.last_used_at),
            "expires_at": rfc3339(store.ends_at(session)),
            "address": session.address,
            "user_agent": session.user_agent,
            "current": session.ref == current,
        }
        for session in store.sessions(user_id)
    ]


def count(user_id: int) -> int:
    """Return how many live sessions a user has."""
    return token_store().session_count(user_id)
