"""The account endpoints: parse with a schema, call the domain, serialize."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from signin.rules import refusals, sessions
from signin.rules.sign_in import sign_in
from signin.store.tokens import ACCESS_TOKEN, IssuedTokens, RefreshRejected, Session
from signin.web.account.schemas import RefreshSchema, SigninSchema, SignoutSchema, TokenRequestSchema, grant
from signin.web.auth import require_service, require_token
from signin.web.errors import InvalidGrant, MfaRequired
from signin.web.parsing import load
from signin.web.throttle import (
    client_address,
    credentials_refused,
    remember_address,
    throttle_refresh,
    throttle_service,
    throttle_signin,
)

bp = Blueprint("account", __name__, url_prefix="/api/v2/account")

# Built once: a schema is stateless, and building one costs more than using it.
# Responses are plain dicts; their schemas in schemas.py document them, and
# tests/test_openapi.py checks every answer against that document.
SIGNIN, REFRESH, SIGNOUT, TOKEN_REQUEST = SigninSchema(), RefreshSchema(), SignoutSchema(), TokenRequestSchema()


def no_content() -> Response:
    """Return a 204 with no body and so no Content-Type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def token_response(issued: IssuedTokens) -> dict:
    """Serialize a fresh token pair in the seed's shape."""
    session = issued.session
    token = {
        "access_token": issued.access_token,
        "expires_in": str(issued.expires_in),
        "token_type": "Bearer",
        "refresh_token": issued.refresh_token,
        "client_id": session.client_id,
        "scope": session.scope,
    }
    return {"token": token}


def signed_in(data: dict[str, Any], client_id: str, scope: str) -> IssuedTokens:
    """Sign in with a parsed body's credentials; a refusal counts against the failure limits, and is raised on."""
    try:
        issued = sign_in(
            data["username"],
            data["password"],
            otp=data.get("otp"),
            client_id=client_id,
            scope=scope,
            address=client_address(),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except refusals.AuthenticationFailed:
        credentials_refused()
        raise
    remember_address(issued.session.username)
    return issued


@bp.post("/signin/")
@throttle_signin
def signin() -> dict:
    """Exchange a username and password for a token pair."""
    data = load(SIGNIN)
    client_id, scope = grant(data["client_id"], data["scope"])
    try:
        return token_response(signed_in(data, client_id, scope))
    except refusals.MfaRequired:
        raise MfaRequired() from None
    except refusals.AuthenticationFailed:
        raise InvalidGrant() from None


@bp.post("/refresh/")
@throttle_refresh
def refresh() -> dict:
    """Exchange a refresh token, once, for a new pair of the same session."""
    data = load(REFRESH)
    try:
        issued = sessions.refresh(data["refresh_token"])
    except RefreshRejected:
        raise InvalidGrant() from None
    return token_response(issued)


@bp.post("/signout/")
@require_token()
def signout() -> Response:
    """End the bearer's session, or, with everywhere true, every session of the user."""
    data = load(SIGNOUT)
    sessions.sign_out(g.session, everywhere=data["everywhere"])
    return no_content()


@bp.get("/me/")
@require_token()
def me() -> dict:
    """Describe the bearer's session, from the token record alone."""
    session: Session = g.session
    return {
        "username": session.username,
        "client_id": session.client_id,
        "scope": session.scope,
        "expires_at": sessions.rfc3339(session.expires_at),
    }


@bp.post("/introspect/")
@throttle_service
@require_service
def introspect() -> dict:
    """Tell a registered service whether a token is live, and whose it is (RFC 7662)."""
    data = load(TOKEN_REQUEST)
    live = sessions.introspect(data["token"], data["token_type_hint"])
    if live is None:
        return {"active": False}
    session = live.session
    claims: dict[str, object] = {
        "active": True,
        "sub": str(session.user_id),
        "username": session.username,
        "client_id": session.client_id,
        "scope": session.scope,
    }
    if live.use == ACCESS_TOKEN:
        claims |= {"token_type": "Bearer"}  # a refresh token is no bearer token
    return claims | {"token_use": live.use, "exp": live.expires_at, "iat": session.issued_at}


@bp.post("/revoke/")
@throttle_service
@require_service
def revoke() -> dict:
    """Revoke the session a token belongs to, whether or not it exists (RFC 7009)."""
    data = load(TOKEN_REQUEST)
    sessions.revoke_token(data["token"], service=g.service)
    return {}
