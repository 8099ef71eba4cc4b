"""The audit trail: one JSON line per security event, and the request id that ties them.

Lines go to the ``signin.audit`` logger at INFO; ``signin serve`` prints
them to standard error. They never hold a password, token, digest or secret.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import has_request_context, request

from signin import metrics
from signin.headers import REQUEST_ID_KEY, made_request_id
from signin.tokens import Session

log = logging.getLogger("signin.audit")

# Built once: json.dumps with options builds an encoder on every call.
LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def record(
    event: str,
    outcome: str,
    *,
    reason: str | None = None,
    username: str | None = None,
    client_id: str | None = None,
    **details: object,
) -> None:
    """Write one audit line for an event of the current request (or command)."""
    in_request = has_request_context()
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": event,
        "outcome": outcome,
        "reason": reason,
        "username": username,
        "address": request.remote_addr if in_request else None,
        "client_id": client_id,
        "request_id": request_id() if in_request else None,
        **details,
    }
    log.info(LINE.encode(entry))
    metrics.count_event(event, outcome, reason, details)


def about(session: Session | None) -> dict[str, object]:
    """Return what an audit line says of a session: whose, which client, which session."""
    if session is None:
        return {"username": None, "client_id": None, "session": None}
    return {"username": session.username, "client_id": session.client_id, "session": session.public_id}


def request_id() -> str:
    """Return the current request's id: its ``X-Request-ID`` if short and plain, else one made for it."""
    environ = request.environ
    if REQUEST_ID_KEY not in environ:  # a request that bypassed the middleware (test_request_context)
        environ[REQUEST_ID_KEY] = made_request_id()
    return environ[REQUEST_ID_KEY]
