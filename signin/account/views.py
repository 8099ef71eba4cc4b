"""The account endpoints: parse with a schema, call the domain, serialize."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from signin import accounts, audit, sessions
from signin.account.schemas import RefreshSchema, SigninSchema, SignoutSchema, TokenRequestSchema, grant
from signin.auth import require_service, require_token, token_store
from signin.errors import InvalidGrant, MfaRequired
from signin.events import Event, Outcome
from signin.parsing import load
from signin.throttle import (
    client_address,
    credentials_refused,
    remember_address,
    throttle_refresh,
    throttle_service,
    throttle_signin,
)
from signin.tokens import IssuedTokens, RefreshRejected, Session

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


@bp.post("/signin/")
@throttle_signin
def signin() -> dict:
    """Exchange a username and password for a token pair."""
    data = load(SIGNIN)
    client_id, scope = grant(data["client_id"], data["scope"])
    try:
        issued = accounts.sign_in(
            data["username"],
            data["password"],
            otp=data.get("otp"),
            client_id=client_id,
            scope=scope,
            address=client_address(),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except accounts.MfaRequired:
        credentials_refused()
        raise MfaRequired() from None
    except accounts.AuthenticationFailed:
        credentials_refused()
        raise InvalidGrant() from None
    remember_address(issued.session.username)
    return token_response(issued)


@bp.post("/refresh/")
@throttle_refresh
def refresh() -> dict:
    """Exchange a refresh token, once, for a new pair of the same session."""
    data = load(REFRESH)
    try:
        issued = token_store().rotate(data["refresh_token"])
    except RefreshRejected as rejected:
        reused = rejected.reason == "reuse_detected"
        event, outcome = (Event.REFRESH_REUSE, Outcome.SESSION_REVOKED) if reused else (Event.REFRESH, Outcome.FAILURE)
        audit.record(event, outcome, reason=rejected.reason, **audit.about(rejected.session))
        raise InvalidGrant() from None
    audit.record(Event.REFRESH, Outcome.SUCCESS, **audit.about(issued.session))
    return token_response(issued)


@bp.post("/signout/")
@require_token()
def signout() -> Response:
    """End the bearer's session, or, with everywhere true, every session of the user."""
    data = load(SIGNOUT)
    accounts.sign_out(g.session, everywhere=data["everywhere"])
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
    live = token_store().resolve_any(data["token"])
    if live is None:
        return {"active": False}
    session, expires_at = live
    return {
        "active": True,
        "sub": str(session.user_id),
        "username": session.username,
        "client_id": session.client_id,
        "scope": session.scope,
        "token_type": "Bearer",
        "exp": expires_at,
        "iat": session.issued_at,
    }


@bp.post("/revoke/")
@throttle_service
@require_service
def revoke() -> dict:
    """Revoke the session a token belongs to, whether or not it exists (RFC 7009)."""
    data = load(TOKEN_REQUEST)
    session = token_store().revoke_token(data["token"])
    outcome = Outcome.SUCCESS if session else Outcome.NO_SUCH_TOKEN
    audit.record(Event.REVOKE, outcome, **audit.about(session), service=g.service)
    return {}
