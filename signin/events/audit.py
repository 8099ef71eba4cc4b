"""The audit trail: one JSON line per event, and the request id that ties a request's lines together.

Lines go to the ``signin.audit`` logger at INFO; every server prints them to
standard error (``signin.serving``). They never hold a password, token,
digest or secret.
"""

from __future__ import annotations

import json
import logging
import random
import re
from datetime import UTC, datetime

from flask import has_request_context, request

from signin.events.names import Happened

log = logging.getLogger("signin.audit")

# Where a request's id waits in its WSGI environ (``signin.web.headers`` puts it there).
REQUEST_ID_KEY = "signin.request_id"


# Built once: json.dumps with options builds an encoder on every call.
LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# What JSON leaves raw but a reader of lines, a terminal or an editor would act on: DEL and the C1
# controls (NEL among them), line and paragraph separators, and the invisible format characters
# (Unicode's Cf: bidi overrides and isolates, zero widths, the BOM...). tests/test_audit.py checks
# this against unicodedata.
UNSAFE = re.compile(
    "[\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)


def _escaped(match: re.Match[str]) -> str:
    return "".join(f"\\u{unit:04x}" for unit in _utf16(match[0]))


def _utf16(character: str) -> list[int]:
    encoded = character.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def line(entry: dict[str, object]) -> str:
    """Return an audit entry as one line of JSON, whatever its strings hold."""
    return UNSAFE.sub(_escaped, LINE.encode(entry))


def write(happened: Happened) -> None:
    """Write the audit line of an event: with the time and, in a request, the client's address and request id."""
    in_request = has_request_context()
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": happened.event,
        "outcome": happened.outcome,
        "reason": happened.reason,
        "username": happened.username,
        "address": request.remote_addr if in_request else None,
        "client_id": happened.client_id,
        "request_id": request_id() if in_request else None,
        **happened.details,
    }
    log.info(line(entry))


def made_request_id() -> str:
    """Return 128 random bits in hex: unique, but no secret, so without a system call.

    An id only ties log lines together; ``random`` (reseeded in forked
    children) costs a tenth of ``secrets``, which asks the kernel each time.
    """
    return f"{random.getrandbits(128):032x}"


def request_id() -> str:
    """Return the current request's id: its ``X-Request-ID`` if short and plain, else one made for it."""
    environ = request.environ
    if REQUEST_ID_KEY not in environ:  # a request that bypassed the middleware (test_request_context)
        environ[REQUEST_ID_KEY] = made_request_id()
    return environ[REQUEST_ID_KEY]
