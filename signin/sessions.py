"""A user's sessions as the account API shows them, read through the token store."""

from __future__ import annotations

import time

from signin.auth import token_store
from signin.tokens import Session


def rfc3339(seconds: int) -> str:
    """Return a Unix time as RFC 3339 in UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


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
