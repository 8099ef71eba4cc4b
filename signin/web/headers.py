"""WSGI middleware: the headers every answer carries.

- ``X-Request-ID``: the caller's, if short and plain, else one made here. The
  request's audit lines carry the same id (``audit.request_id``).
- ``Cache-Control: no-store`` and ``Pragma: no-cache``: an answer holds
  tokens or account data, or refuses them (RFC 6749 5.1 and 5.2); none is
  worth caching.

A middleware rather than Flask hooks: it reads the environ directly, where
each hook pays for context-local lookups and its own dispatch, and one
``start_response`` wrapper adds every header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from signin.events.audit import REQUEST_ID_KEY, made_request_id

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain, so it cannot forge log lines.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


class AnswerHeaders:
    """Give every request an id, in its environ, and every answer its id and no-store headers."""

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID")
        environ[REQUEST_ID_KEY] = given if given and REQUEST_ID_PATTERN.fullmatch(given) else made_request_id()

        def start_with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (REQUEST_ID_HEADER, environ[REQUEST_ID_KEY]), *NO_STORE], exc_info)

        return self.wsgi_app(environ, start_with_headers)
