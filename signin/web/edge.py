"""The HTTP edge ``signin serve`` runs: waitress, its own answers in the API's JSON, and no smuggling.

waitress answers some requests before the app sees them: a malformed
request line or header, a body over ``max_request_body_size``, headers too
large. Here those answers are the API's JSON errors, with no-store headers,
like every other. A request with both ``Content-Length`` and
``Transfer-Encoding`` is answered and its connection closed (RFC 9112 6.1:
the two disagree on where the next request starts, the shape of request
smuggling). An answer without a body (204) keeps its connection open, as
any other does. Another server running ``signin.wsgi:app`` keeps its own
behaviour here; docs/http-edge.md says what a proxy in front must do.
"""

from __future__ import annotations

import json
from typing import Any, cast

import waitress.server
from flask import Flask
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import Error

from signin.web.errors import HTTP_ERROR_DESCRIPTIONS, http_error
from signin.web.headers import NO_STORE


class Parser(HTTPRequestParser):
    """waitress's request parser, closing a connection whose request frames its body two ways."""

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked and "CONTENT_LENGTH" in self.headers:  # the client's, until the body is read
            cast(dict[str, str], self.headers)["CONNECTION"] = "close"


class JSONErrorTask(ErrorTask):
    """waitress's own error answer, as the API's JSON error."""

    def execute(self) -> None:
        problem = cast(Error, cast(HTTPRequestParser, self.request).error)
        # The app's own sentence where it has one (its 413, say), else waitress's words as one.
        words = problem.body.strip().rstrip(".")
        description = HTTP_ERROR_DESCRIPTIONS.get(problem.code) or (f"{words}." if words else None)
        error = http_error(problem.code, description, name=problem.reason)
        body = json.dumps(error.body(), separators=(",", ":")).encode() + b"\n"
        self.status = f"{problem.code} {problem.reason}"
        cast(list[tuple[str, str]], self.response_headers).extend([("Content-Type", "application/json"), *NO_STORE])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class KeepAliveTask(WSGITask):
    """waitress's task for the app, keeping the connection after an HTTP/1.1 answer without a body.

    waitress closes a connection after any answer it cannot frame by length;
    a 204 may carry no length (RFC 9110 8.6), and needs none: it ends at its
    headers. Every other reason to close (the client's, HTTP/1.0) stands.
    """

    def set_close_on_finish(self) -> None:
        if not (self.has_body or self.wrote_header or self.close_on_finish or self._client_closes()):
            return
        super().set_close_on_finish()

    def _client_closes(self) -> bool:
        return (
            self.version != "1.1"
            or cast(HTTPRequestParser, self.request).headers.get("CONNECTION", "").lower() == "close"
        )


class Channel(HTTPChannel):
    """waitress's channel, with the parser, the task and the error answers above."""

    parser_class = Parser
    task_class = KeepAliveTask
    error_task_class = JSONErrorTask


def create_server(app: Flask, **options: Any) -> Any:
    """Return waitress's server for ``app``, bound and listening, on this module's channel."""
    server = waitress.server.create_server(app, **options)
    listening = (server.map or {}).values() if isinstance(server, waitress.server.MultiSocketServer) else [server]
    for one in listening:
        if isinstance(one, waitress.server.BaseWSGIServer):
            one.channel_class = Channel
    return server
