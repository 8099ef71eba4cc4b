"""The API's errors and the one place that turns any of them into JSON."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping

import redis.exceptions
from flask import Flask, Response, current_app, jsonify, request
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

from signin.events import metrics
from signin.rules.passwords import HashingBusy
from signin.rules.policy import REASONS
from signin.store.outages import DATABASE_OUTAGES, REDIS_OUTAGES, REFUSAL

log = logging.getLogger(__name__)

# OAuth-style codes for werkzeug's own HTTP errors.
HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
}
# One human sentence each, in place of werkzeug's longer defaults.
HTTP_ERROR_DESCRIPTIONS = {
    404: "There is no such endpoint.",
    405: "This endpoint does not allow that method.",
    413: "The request body is larger than the limit.",
    429: "Too many requests; retry after the number of seconds in Retry-After.",
}


class APIError(Exception):
    """An error the client is told about: everything it carries is given when it is made.

    A subclass names a kind of error with class defaults; any instance may
    override them through the constructor, never by being patched afterwards.
    """

    status_code = 400
    error = "invalid_request"
    description = "The request is invalid."
    headers: Mapping[str, str] = {}

    def __init__(
        self,
        description: str | None = None,
        *,
        status_code: int | None = None,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, object] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(description or self.description)
        self.description = description or self.description
        self.status_code = status_code or self.status_code
        self.error = error or self.error
        self.headers = dict(self.headers if headers is None else headers)
        self.fields = fields
        # Members of the body beside the error's own (a readiness check's states, say).
        self.details = dict(details or {})

    def body(self) -> dict:
        body: dict[str, object] = {"error": self.error, "error_description": self.description, **self.details}
        if self.fields is not None:
            body["fields"] = self.fields
        return body


class InvalidRequest(APIError):
    """The body is malformed or a field is missing, empty, mistyped or too long."""


class InvalidScope(APIError):
    """A requested scope is not allowed."""

    error = "invalid_scope"
    description = "The requested scope is not allowed."


class InvalidGrant(APIError):
    """Bad credentials or refresh token; one body for every cause."""

    status_code = 401
    error = "invalid_grant"
    description = "The credentials or refresh token are invalid, expired or revoked."


class WrongCurrentPassword(APIError):
    """A self-service endpoint's re-authentication failed: the current password is wrong."""

    error = "invalid_grant"
    description = "The current password is wrong."


class WrongCode(APIError):
    """A self-service endpoint's one-time code (or password and code) is wrong, or nothing is pending."""

    error = "invalid_grant"
    description = "The one-time code is wrong, or nothing is pending."


class WrongPasswordOrCode(APIError):
    """Turning TOTP off needs the password and a code: one of them is wrong, whichever."""

    error = "invalid_grant"
    description = "The password or the one-time code is wrong."


class MfaRequired(APIError):
    """The password is right, but the account needs a one-time code."""

    status_code = 401
    error = "mfa_required"
    description = "This account needs a one-time code: send it as otp."


class TotpAlreadyEnabled(APIError):
    """TOTP enrolment for a user who has it."""

    status_code = 409
    error = "totp_already_enabled"
    description = "This account has TOTP already: turn it off first to enrol again."


class WeakPassword(APIError):
    """A new password the policy refuses; ``reasons`` says why."""

    error = "weak_password"
    description = "The new password is not allowed; reasons says why."

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(details={"reasons": reasons})


class NoSuchSession(APIError):
    """The session is not a live session of the bearer's user: another user's is no different."""

    status_code = 404
    error = "not_found"
    description = "There is no such session."


class UnsupportedGrantType(APIError):
    """The token endpoint was asked for a grant it does not make (RFC 6749 5.2)."""

    error = "unsupported_grant_type"
    description = "The grant_type must be password or refresh_token."


class UnknownClient(APIError):
    """The token endpoint was named a client that is not configured (RFC 6749 5.2 invalid_client)."""

    status_code = 401
    error = "invalid_client"
    description = "The client is not one of the configured clients."
    # RFC 6749 5.2 asks for it when the client came by HTTP Basic; RFC 9110 15.5.2, with every 401.
    headers = {"WWW-Authenticate": 'Basic realm="signin"'}


class InvalidToken(APIError):
    """The bearer token is missing, unknown, expired or revoked."""

    status_code = 401
    error = "invalid_token"
    description = "The access token is missing, invalid, expired or revoked."
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class InsufficientScope(APIError):
    """The bearer token is live but lacks a scope the resource needs."""

    status_code = 403
    error = "insufficient_scope"
    description = "The access token does not grant the scope this resource needs."
    headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}


class InvalidClient(APIError):
    """The calling service's credentials are missing or wrong."""

    status_code = 401
    error = "invalid_client"
    description = "The service credentials are missing or invalid."
    headers = {"WWW-Authenticate": 'Basic realm="signin"'}


class TemporarilyUnavailable(APIError):
    """Redis or the database cannot be reached."""

    status_code = 503
    error = "temporarily_unavailable"
    description = "The service is temporarily unavailable; try again shortly."
    headers = {"Retry-After": "1"}


def http_error(
    status: int, description: str | None = None, headers: Mapping[str, str] | None = None, *, name: str = ""
) -> APIError:
    """Return the API error for an HTTP status werkzeug or the server answers itself."""
    code = HTTP_ERROR_CODES.get(status) or name.lower().replace(" ", "_")
    return APIError(description or HTTP_ERROR_DESCRIPTIONS.get(status), status_code=status, error=code, headers=headers)


def error_response(error: APIError) -> Response:
    """Build the JSON response for an API error."""
    response = jsonify(error.body())
    response.status_code = error.status_code
    response.headers.update(error.headers)
    return response


class ErrorSchema(Schema):
    """The body of every error answer."""

    error = fields.String(required=True, metadata={"description": "What went wrong, as a code from the contract."})
    error_description = fields.String(required=True, metadata={"description": "One human sentence saying what."})
    reasons = fields.List(
        fields.String(validate=validate.OneOf(REASONS)),
        metadata={"description": "For weak_password: why the policy refuses the new password."},
    )
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "For a validation error: each invalid field and what is wrong with it."},
    )


def _wrong_method_across_the_slash(exc: HTTPException) -> HTTPException:
    """Make a routing 404 a 405 if the path, its trailing slash toggled, routes other methods.

    With strict slashes off, werkzeug routes ``/signin`` to the ``/signin/``
    rule for its methods, yet answers any other method 404, not 405.
    """
    if not isinstance(exc, NotFound) or request.routing_exception is not exc:
        return exc
    path = request.path
    toggled = path[:-1] if path.endswith("/") else f"{path}/"
    adapter = current_app.create_url_adapter(request)
    methods = adapter.allowed_methods(toggled) if adapter is not None else []
    # Were the method among them, the path is not the route's (a slash too many, say).
    return MethodNotAllowed(methods) if methods and request.method not in methods else exc


def _from_http_exception(exc: HTTPException) -> Response:
    # Raised after the view (in Flask-Limiter's after_request hook, say), an
    # exception skips its own handler and arrives here as a 500.
    if isinstance(exc, InternalServerError) and isinstance(exc.original_exception, REDIS_OUTAGES + DATABASE_OUTAGES):
        return _store_outage(exc.original_exception)
    exc = _wrong_method_across_the_slash(exc)
    code = exc.code or 500
    description = exc.description
    if description == type(exc).description or code == 429:
        description = HTTP_ERROR_DESCRIPTIONS.get(code, description)
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return error_response(http_error(code, description, headers, name=exc.name))


def _store_outage(exc: Exception) -> Response:
    # The class name tells operators which store; the message may hold a URL.
    log.warning("store unavailable: %s", type(exc).__name__)
    state = current_app.extensions.get("redis")  # another app using require_token has none
    embedded = state.embedded if state is not None else None
    if embedded is not None and isinstance(exc, redis.exceptions.ConnectionError):
        embedded.revive()  # killed, say: the next request finds it back
    metrics.count_store_error("redis" if isinstance(exc, REDIS_OUTAGES) else "database")
    return error_response(TemporarilyUnavailable())


def _hashing_busy(_: HashingBusy) -> Response:
    # Every password check this process allows is under way, and as many wait: come back shortly.
    metrics.count_busy()
    return error_response(TemporarilyUnavailable())


def _redis_refused(exc: redis.exceptions.ResponseError) -> Response:
    # A Redis that refuses writes (OOM at maxmemory, MISCONF after a failed save, no
    # replicas) says so in its message, bare or from inside a script (Redis 6.2:
    # "Error running script ...: -OOM ..."). In a pipeline, redis-py puts the command,
    # whose arguments could hold anything, before Redis's own words.
    said = str(exc).rpartition("of pipeline caused error: ")[2]
    if REFUSAL.search(said):
        return _store_outage(exc)
    # Logged in Redis's words, with where it was raised: not the command, which holds digests.
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled Redis error %s: %s\n%s", type(exc).__name__, said, where)
    return _server_error()


def _cluster_error(exc: redis.exceptions.RedisClusterException) -> Response:
    # redis-py raises this for misuse, and for a cluster it cannot reach at all.
    if isinstance(exc.__cause__, REDIS_OUTAGES):
        return _store_outage(exc.__cause__)
    return _unexpected(exc)


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return _server_error()


def _server_error() -> Response:
    return error_response(http_error(500, "The server failed to handle the request."))


def init_token_errors(app: Flask) -> None:
    """Register the handlers a token check's errors need: API errors, and Redis out of reach, as JSON."""
    app.register_error_handler(APIError, error_response)
    for outage in REDIS_OUTAGES:
        app.register_error_handler(outage, _store_outage)


def init_app(app: Flask) -> None:
    """Register the handlers that make every error a JSON body."""
    init_token_errors(app)
    app.register_error_handler(HTTPException, _from_http_exception)
    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, _store_outage)
    app.register_error_handler(HashingBusy, _hashing_busy)
    app.register_error_handler(redis.exceptions.ResponseError, _redis_refused)
    app.register_error_handler(redis.exceptions.RedisClusterException, _cluster_error)
    app.register_error_handler(Exception, _unexpected)
