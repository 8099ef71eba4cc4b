"""The OpenAPI 3 document of every route, built from the schemas the views use."""

from __future__ import annotations

import inspect
import re
from http import HTTPStatus
from importlib.metadata import version
from itertools import groupby
from operator import attrgetter
from typing import Any, NamedTuple

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, request
from marshmallow import Schema
from werkzeug.routing import Rule

from signin.rules.policy import MAX_LENGTH
from signin.web import errors
from signin.web.account.schemas import (
    EndedSchema,
    IntrospectionSchema,
    MeSchema,
    OAuthTokenSchema,
    PasswordChangeSchema,
    PasswordGrantSchema,
    RecoveryCodesSchema,
    RefreshGrantSchema,
    RefreshSchema,
    SessionsSchema,
    SigninSchema,
    SignoutSchema,
    TokenRequestSchema,
    TokenResponseSchema,
    TotpConfirmSchema,
    TotpDisableSchema,
    TotpEnrolmentSchema,
    TotpEnrolSchema,
    scope_pattern,
)
from signin.web.errors import ErrorSchema
from signin.web.health import HealthSchema, NotReadySchema, ReadinessSchema
from signin.web.parsing import FORM

EXTENSION = "signin.openapi"
JSON = "application/json"
DESCRIPTION = (
    "Opaque, revocable tokens for a username and password. Every path answers with and without its trailing "
    "slash; request bodies are JSON or a form, the same fields either way; every response, errors included, is JSON."
)
BEARER, BASIC = "bearerAuth", "serviceBasic"
SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "description": "An access token from signin or refresh."},
    BASIC: {"type": "http", "scheme": "basic", "description": "A name and secret from `signin services add`."},
}

Body = type[Schema] | dict[str, Any] | None
# Routes the document leaves out on purpose: the API page's scripts, styles and
# icon are files a browser fetches for it, not operations of the API.
UNDESCRIBED = frozenset({"static", "docs.asset"})


class Operation(NamedTuple):
    """What one method of one route answers, reads, demands, and how else it can fail."""

    answers: dict[int, Body]
    # One schema, or several of which the body is one (the token endpoint's grants).
    body: type[Schema] | tuple[type[Schema], ...] | None = None
    auth: str | None = None
    fails: tuple[str, ...] = ()
    # What a success is written in; errors are always JSON.
    media_type: str = JSON


# A body adds invalid_request, payload_too_large and unsupported_media_type to
# `fails`; a security scheme adds its 401. Every route needs a row here, or its
# endpoint in UNDESCRIBED. The examples of a body and of a success come from
# its fields' metadata (see signin/web/account/schemas.py); a dict body gives its own.
ACCOUNT, OUTAGE = "/api/v2/account", "temporarily_unavailable"
OPERATIONS: dict[tuple[str, str], Operation] = {
    (f"{ACCOUNT}/signin/", "post"): Operation(
        {200: TokenResponseSchema},
        SigninSchema,
        None,
        ("invalid_scope", "invalid_grant", "mfa_required", "rate_limited", OUTAGE),
    ),
    (f"{ACCOUNT}/token/", "post"): Operation(
        {200: OAuthTokenSchema},
        (PasswordGrantSchema, RefreshGrantSchema),
        None,
        (
            "invalid_scope",
            "grant_refused",
            "grant_needs_otp",
            "unsupported_grant_type",
            "unknown_client",
            "rate_limited",
            OUTAGE,
        ),
    ),
    (f"{ACCOUNT}/refresh/", "post"): Operation(
        {200: TokenResponseSchema}, RefreshSchema, None, ("invalid_grant", "rate_limited", OUTAGE)
    ),
    (f"{ACCOUNT}/signout/", "post"): Operation({204: None}, SignoutSchema, BEARER, (OUTAGE,)),
    (f"{ACCOUNT}/me/", "get"): Operation({200: MeSchema}, None, BEARER, (OUTAGE,)),
    (f"{ACCOUNT}/password/", "post"): Operation(
        {204: None}, PasswordChangeSchema, BEARER, ("weak_password", "wrong_current_password", "rate_limited", OUTAGE)
    ),
    (f"{ACCOUNT}/sessions/", "get"): Operation({200: SessionsSchema}, None, BEARER, (OUTAGE,)),
    (f"{ACCOUNT}/sessions/", "delete"): Operation({200: EndedSchema}, None, BEARER, (OUTAGE,)),
    (f"{ACCOUNT}/sessions/<session_id>/", "delete"): Operation({204: None}, None, BEARER, ("no_such_session", OUTAGE)),
    (f"{ACCOUNT}/totp/", "post"): Operation(
        {200: TotpEnrolmentSchema},
        TotpEnrolSchema,
        BEARER,
        ("wrong_current_password", "totp_already_enabled", "rate_limited", OUTAGE),
    ),
    (f"{ACCOUNT}/totp/confirm/", "post"): Operation(
        {200: RecoveryCodesSchema}, TotpConfirmSchema, BEARER, ("wrong_code", "rate_limited", OUTAGE)
    ),
    (f"{ACCOUNT}/totp/disable/", "post"): Operation(
        {204: None}, TotpDisableSchema, BEARER, ("wrong_password_or_code", "rate_limited", OUTAGE)
    ),
    (f"{ACCOUNT}/introspect/", "post"): Operation(
        {200: IntrospectionSchema}, TokenRequestSchema, BASIC, ("rate_limited", OUTAGE)
    ),
    (f"{ACCOUNT}/revoke/", "post"): Operation(
        {200: {"type": "object", "maxProperties": 0, "example": {}}},
        TokenRequestSchema,
        BASIC,
        ("rate_limited", OUTAGE),
    ),
    ("/healthz", "get"): Operation({200: HealthSchema}),
    ("/readyz", "get"): Operation({200: ReadinessSchema, 503: NotReadySchema}),
    ("/api/v2/openapi.json", "get"): Operation(
        {
            200: {
                "type": "object",
                "description": "This document.",
                "example": {"openapi": "3.1.0", "info": {"title": "signin", "version": "0.1.0"}, "paths": {}},
            }
        }
    ),
    ("/api/v2/docs", "get"): Operation(
        {
            200: {
                "type": "string",
                "description": "This document as a page to read and try in a browser (Swagger UI, served from here).",
                "example": '<!DOCTYPE html>\n<html lang="en">\n<head>\n<title>signin API</title>',
            }
        },
        media_type="text/html",
    ),
    ("/metrics", "get"): Operation(
        {
            200: {
                "type": "string",
                "description": "Counters and latencies in the Prometheus text format.",
                "example": "# HELP signin_signins_total Sign-in attempts, by outcome.\n"
                '# TYPE signin_signins_total counter\nsignin_signins_total{outcome="success"} 3.0\n',
            }
        },
        media_type="text/plain",
    ),
}

# The account blueprint keeps these out of every cache.
PRIVATE = (
    TokenResponseSchema,
    OAuthTokenSchema,
    MeSchema,
    IntrospectionSchema,
    SessionsSchema,
    EndedSchema,
    TotpEnrolmentSchema,
    RecoveryCodesSchema,
)
# A route's variable, as werkzeug writes it and OpenAPI does.
ROUTE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
PATH_PARAMETERS = {
    "session_id": "The session's id, as GET /api/v2/account/sessions/ lists it.",
}
HEADERS = {
    "Cache-Control": {"description": "Tokens and account data are never cached.", "schema": {"enum": ["no-store"]}},
    "Pragma": {"description": "The same, for HTTP/1.0 caches.", "schema": {"enum": ["no-cache"]}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"pattern": "^[1-9][0-9]*$"}},
    "WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}},
}


# What a client receives for each error an operation can answer, by a name unique among them.
FAILURES = {
    "weak_password": errors.WeakPassword(["too_short", "common"]),
    "wrong_current_password": errors.WrongCurrentPassword(),
    "no_such_session": errors.NoSuchSession(),
    "wrong_code": errors.WrongCode(),
    "wrong_password_or_code": errors.WrongPasswordOrCode(),
    # The token endpoint's refusals, in RFC 6749 5.2's statuses.
    "grant_refused": errors.InvalidGrant(status_code=400),
    "grant_needs_otp": errors.MfaRequired(status_code=400),
    "unknown_client": errors.UnknownClient(),
    "unsupported_grant_type": errors.UnsupportedGrantType(),
} | {
    failure.error: failure
    for failure in (
        errors.InvalidScope(),
        errors.MfaRequired(),
        errors.TotpAlreadyEnabled(),
        errors.InvalidGrant(),
        errors.InvalidToken(),
        errors.InvalidClient(),
        errors.TemporarilyUnavailable(),
        errors.http_error(413),
        errors.http_error(415, f"Send the body as {JSON} or {FORM}."),
        errors.http_error(429, headers={"Retry-After": "60"}),
    )
}
AUTH_FAILURES = {BEARER: "invalid_token", BASIC: "invalid_client"}


def _invalid(schema: Schema) -> errors.APIError:
    # The example is what this schema says of an empty body, or of one with every field null.
    fields = schema.validate({}) or schema.validate(dict.fromkeys(schema.fields))
    return errors.InvalidRequest("The request body has invalid fields.", fields=fields)


def _failures(operation: Operation) -> list[errors.APIError]:
    failures = [FAILURES[code] for code in operation.fails]
    if operation.body is not None:
        first = operation.body[0] if isinstance(operation.body, tuple) else operation.body
        failures[:0] = [_invalid(first()), FAILURES["payload_too_large"], FAILURES["unsupported_media_type"]]
    if operation.auth is not None:
        failures.append(FAILURES[AUTH_FAILURES[operation.auth]])
    return sorted(failures, key=attrgetter("status_code"))


def _answer(status: int, body: Body, media_type: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    if body is not None:
        answer["content"] = {media_type: {"schema": body}}
    if body in PRIVATE:
        answer["headers"] = {name: HEADERS[name] for name in ("Cache-Control", "Pragma")}
    return answer


def _failed(failures: list[errors.APIError]) -> dict[str, Any]:
    examples = {f.error: {"value": f.body()} for f in failures}
    answer: dict[str, Any] = {
        "description": " ".join(f"`{f.error}`: {f.description}" for f in failures),
        "content": {JSON: {"schema": ErrorSchema, "examples": examples}},
    }
    headers = {name: HEADERS[name] | {"example": value} for f in failures for name, value in f.headers.items()}
    if headers:
        answer["headers"] = headers
    return answer


def _responses(operation: Operation) -> dict[int | str, Any]:
    responses: dict[int | str, Any] = {
        status: _answer(status, body, operation.media_type) for status, body in operation.answers.items()
    }
    for status, failures in groupby(_failures(operation), key=attrgetter("status_code")):
        responses[status] = _failed(list(failures))
    responses["default"] = "Error"
    return responses


def _operation(app: Flask, rule: Rule, method: str) -> dict[str, Any]:
    operation = OPERATIONS.get((rule.rule, method))
    if operation is None:
        raise LookupError(f"{method.upper()} {rule.rule} has no row in signin.web.openapi.OPERATIONS")
    described = {
        "operationId": rule.endpoint,
        "summary": (inspect.getdoc(app.view_functions[rule.endpoint]) or "").partition("\n")[0],
        "tags": [rule.endpoint.partition(".")[0]],
        "responses": _responses(operation),
    }
    if operation.body is not None:
        bodies = operation.body if isinstance(operation.body, tuple) else (operation.body,)
        required = any(field.required for body in bodies for field in body().fields.values())
        schema: Any = {"oneOf": list(bodies)} if len(bodies) > 1 else bodies[0]
        described["requestBody"] = {
            "required": required,
            "content": {JSON: {"schema": schema}, FORM: {"schema": schema}},
        }
    if operation.auth is not None:
        described["security"] = [{operation.auth: []}]
    variables = ROUTE_VARIABLE.findall(rule.rule)
    if variables:
        described["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": PATH_PARAMETERS[name],
            }
            for name in variables
        ]
    return described


def _configured(described: dict[str, Any], config: Any) -> None:
    """Say what the running configuration accepts, which the schema classes cannot know."""
    clients, scopes = config["SIGNIN_CLIENTS"], config["SIGNIN_SCOPES"]
    schemas = described["components"]["schemas"]
    for name in ("Signin", "PasswordGrant", "RefreshGrant"):
        schemas[name]["properties"]["client_id"].update(enum=list(clients), default=clients[0], example=clients[0])
    for name in ("Signin", "PasswordGrant"):
        scope = schemas[name]["properties"]["scope"]
        scope.update(
            pattern=scope_pattern(scopes),
            default=config["SIGNIN_DEFAULT_SCOPE"],
            example=" ".join(scopes),
            description=f"{scope['description']} Allowed: {', '.join(f'`{s}`' for s in scopes)}.",
        )
    # The policy's bounds on length; its other reasons (common, like the username, unchanged) no schema can say.
    new_password = described["components"]["schemas"]["PasswordChange"]["properties"]["new_password"]
    new_password.update(minLength=config["SIGNIN_PASSWORD_MIN_LENGTH"], maxLength=MAX_LENGTH)


NO_EXAMPLE = object()


def _example(described: dict[str, Any], schema: dict[str, Any]) -> Any:
    """Return a schema's example, or one made of its properties' or items' examples."""
    while "$ref" in schema and "example" not in schema:
        schema = described["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    if "example" in schema:
        return schema["example"]
    if "oneOf" in schema:
        return _example(described, schema["oneOf"][0])
    if "items" in schema:
        item = _example(described, schema["items"])
        return NO_EXAMPLE if item is NO_EXAMPLE else [item]
    if "properties" not in schema and schema.get("type") != "object":
        return NO_EXAMPLE
    examples = {name: _example(described, value) for name, value in schema.get("properties", {}).items()}
    return {name: value for name, value in examples.items() if value is not NO_EXAMPLE}


def _exemplified(described: dict[str, Any]) -> None:
    """Give every request body and every success answer an example, where its schema has one."""
    for operations in described["paths"].values():
        for operation in operations.values():
            media = [*operation.get("requestBody", {}).get("content", {}).values()]
            for status, answer in operation["responses"].items():
                if str(status).startswith("2"):
                    media.extend(answer.get("content", {}).values())
            for medium in media:
                example = _example(described, medium["schema"])
                if example is not NO_EXAMPLE:
                    medium["example"] = example


def build(app: Flask) -> dict[str, Any]:
    """Describe every route of ``app``; one without a row in ``OPERATIONS`` is an error."""
    spec = APISpec("signin", version("signin"), "3.1.0", [MarshmallowPlugin()], info={"description": DESCRIPTION})
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    default = "Any other error (404 not_found, 405 method_not_allowed, 500 server_error), in the same shape."
    spec.components.response("Error", {"description": default, "content": {JSON: {"schema": ErrorSchema}}})
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in UNDESCRIBED:
            methods = sorted(method.lower() for method in (rule.methods or set()) - {"HEAD", "OPTIONS"})
            path = ROUTE_VARIABLE.sub(r"{\1}", rule.rule)
            spec.path(path, operations={method: _operation(app, rule, method) for method in methods})
    described = spec.to_dict()
    _configured(described, app.config)
    _exemplified(described)
    return described


def document(app: Flask) -> dict[str, Any]:
    """Return the app's OpenAPI document, built on first use."""
    # An app's routes are fixed once it serves, so one build lasts its lifetime.
    if EXTENSION not in app.extensions:
        app.extensions[EXTENSION] = build(app)
    return app.extensions[EXTENSION]


bp = Blueprint("openapi", __name__)


@bp.get("/api/v2/openapi.json")
def openapi() -> dict[str, Any]:
    """Serve the OpenAPI 3 document of this API."""
    # Relative to this host, and to the prefix a proxy mounts the service at.
    servers = [{"url": request.script_root or "/", "description": "This service, as this request reached it."}]
    return {**document(current_app), "servers": servers}
