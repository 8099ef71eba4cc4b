"""What happened: the rules emit each event once; its readers (audit lines, metrics) take it from there.

A rule calls ``emit`` after it has done the thing, whichever door called the
rule (the account API, the CLI): so every door gets the same audit line and
the same count.
"""

from __future__ import annotations

from typing import Any

from signin.events import audit, metrics
from signin.events.names import REFRESH_FAILURES, SIGNIN_FAILURES, Event, Happened, Outcome
from signin.store.tokens import Session


def emit(
    event: Event,
    outcome: str,
    *,
    reason: str | None = None,
    username: str | None = None,
    client_id: str | None = None,
    **details: object,
) -> None:
    """Tell every reader of events that ``event`` happened, with ``outcome``, for the current request or command."""
    happened = Happened(event, outcome, reason, username, client_id, details)
    audit.write(happened)
    metrics.count_event(happened)


def about(session: Session | None) -> dict[str, Any]:
    """Return what an event says of a session: whose, which client, which session."""
    if session is None:
        return {"username": None, "client_id": None, "session": None}
    return {"username": session.username, "client_id": session.client_id, "session": session.public_id}


__all__ = ["REFRESH_FAILURES", "SIGNIN_FAILURES", "Event", "Happened", "Outcome", "about", "emit"]
