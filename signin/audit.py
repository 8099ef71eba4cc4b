"""The audit trail: one JSON line per security event, and the request id that ties them.

Lines go to the ``signin.audit`` logger at INFO; ``signin serve`` prints
them to standard error. They never hold a password, token, digest or secret.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, has_request_context, request

from signin import metrics
from signin.tokens import Session

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("signin.audit")

REQUEST_ID_HEADER = "X-Request-ID"
# Where a request's id waits in its WSGI environ.
REQUEST_ID_KEY = "signin.request_id"
# Built once: json.dumps with options builds an encoder on every call.
LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
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


def made_request_id() -> str:
    """Return 128 random bits in hex: unique, but no secret, so without a system call.

    An id only ties log lines together; ``random`` (reseeded in forked
    children) costs a tenth of ``secrets``, which asks the kernel each time.
    """
    return f"{random.getrandbits(128):032x}"


class RequestIds:
    """WSGI middleware: give every request an id, in its environ and its response.

    A middleware rather than a Flask hook: it reads the environ directly,
    where a hook would pay for a context-local lookup at every step.
    """

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID")
        environ[REQUEST_ID_KEY] = given if given and REQUEST_ID_PATTERN.fullmatch(given) else made_request_id()

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (REQUEST_ID_HEADER, environ[REQUEST_ID_KEY])], exc_info)

        return self.wsgi_app(environ, start_with_id)


def init_app(app: Flask) -> None:
    """Return every request's id in its response."""
    app.wsgi_app = RequestIds(app.wsgi_app)
