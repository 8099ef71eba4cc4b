"""The account endpoints: parse with a schema, call the domain, serialize."""

from __future__ import annotations

from flask import Blueprint, Response

from signin import accounts
from signin.account.schemas import SigninSchema, TokenResponseSchema, grant
from signin.auth import token_store
from signin.errors import InvalidGrant
from signin.parsing import load
from signin.tokens import IssuedTokens

bp = Blueprint("account", __name__, url_prefix="/api/v2/account")


@bp.after_request
def _never_cache(response: Response) -> Response:
    # Tokens and account data must not sit in any cache (RFC 6749 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def token_response(issued: IssuedTokens) -> dict:
    """Serialize a fresh token pair in the seed's shape."""
    session = issued.session
    return TokenResponseSchema().dump(
        {
            "token": {
                "access_token": issued.access_token,
                "expires_in": str(issued.expires_in),
                "token_type": "Bearer",
                "refresh_token": issued.refresh_token,
                "client_id": session.client_id,
                "scope": session.scope,
            }
        }
    )


@bp.post("/signin/")
def signin() -> dict:
    """Exchange a username and password for a token pair."""
    data = load(SigninSchema())
    client_id, scope = grant(data["client_id"], data["scope"])
    try:
        user = accounts.authenticate(data["username"], data["password"])
    except accounts.AuthenticationFailed:
        raise InvalidGrant() from None
    issued = token_store().issue(user.id, user.username, client_id, scope)
    return token_response(issued)
