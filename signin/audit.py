"""The audit trail: one JSON line per security event, and the request id that ties them.

Lines go to the ``signin.audit`` logger at INFO; ``signin serve`` prints
them to standard error. They never hold a password, token, digest or secret.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

from signin import metrics
from signin.tokens import Session

log = logging.getLogger("signin.audit")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain, so it cannot forge log lines.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


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
    log.info(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    metrics.count_event(event, outcome, reason, details)


def about(session: Session | None) -> dict[str, object]:
    """Return what an audit line says of a session: whose, which client, which session."""
    if session is None:
        return {"username": None, "client_id": None, "session": None}
    return {"username": session.username, "client_id": session.client_id, "session": session.public_id}


def request_id() -> str:
    """Return the current request's id: its ``X-Request-ID`` if short and plain, else one made for it."""
    if "request_id" not in g:
        given = request.headers.get(REQUEST_ID_HEADER)
        g.request_id = given if given and REQUEST_ID_PATTERN.fullmatch(given) else secrets.token_hex(16)
    return g.request_id


def _return_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    """Return every request's id in its response."""
    app.after_request(_return_request_id)
