"""POST /api/v2/account/token/: signin and refresh in RFC 6749's shape, for OAuth 2.0 client libraries.

The same two operations as ``/signin/`` and ``/refresh/`` (the same rules, the
same limits and events), answered flat (RFC 6749 5.1) and refused with
RFC 6749 5.2's codes, so that authlib, requests-oauthlib, golang.org/x/oauth2
or Spring read them without a hook. The configured clients are public: one
is named by ``client_id`` in the body, or by HTTP Basic with the client id as
the user name and an empty password.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from flask import current_app, request

from signin.rules import refusals, sessions
from signin.store.tokens import IssuedTokens, RefreshRejected
from signin.web.account.schemas import PASSWORD_GRANT, REFRESH_GRANT, PasswordGrantSchema, RefreshGrantSchema, grant
from signin.web.account.views import bp, signed_in
from signin.web.errors import InvalidGrant, InvalidRequest, MfaRequired, UnknownClient, UnsupportedGrantType
from signin.web.parsing import body_fields, load
from signin.web.throttle import limited_by_callees, throttle_refresh, throttle_signin

PASSWORD, REFRESH = PasswordGrantSchema(), RefreshGrantSchema()


def oauth_token_response(issued: IssuedTokens) -> dict:
    """Serialize a fresh token pair in RFC 6749 5.1's shape."""
    return {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "refresh_token": issued.refresh_token,
        "scope": issued.session.scope,
    }


@bp.post("/token/")
@limited_by_callees
def token() -> dict:
    """Exchange a password or a refresh token for a token pair, in RFC 6749's shape (for OAuth 2.0 libraries)."""
    client_id = _client()
    grant_type = body_fields().get("grant_type")
    if grant_type == PASSWORD_GRANT:
        issued = _password_grant(client_id)
    elif grant_type == REFRESH_GRANT:
        issued = _refresh_grant()
    else:
        raise UnsupportedGrantType()
    return oauth_token_response(issued)


@throttle_signin
def _password_grant(client_id: str) -> IssuedTokens:
    data = load(PASSWORD)
    client_id, scope = grant(client_id, data["scope"])
    try:
        return signed_in(data, client_id, scope)
    except refusals.MfaRequired:
        raise MfaRequired(status_code=400) from None
    except refusals.AuthenticationFailed:
        raise InvalidGrant(status_code=400) from None


@throttle_refresh
def _refresh_grant() -> IssuedTokens:
    data = load(REFRESH)
    try:
        return sessions.refresh(data["refresh_token"])
    except RefreshRejected:
        raise InvalidGrant(status_code=400) from None


def _client() -> str:
    """Return the configured client the request names (none: the first), or raise 401 ``invalid_client``.

    By HTTP Basic, the client id is the user name and the password is empty
    (the clients are public); the body's ``client_id``, if also sent, must
    name the same client (RFC 6749 2.3: one way of naming it).
    """
    clients, named = current_app.config["SIGNIN_CLIENTS"], body_fields().get("client_id")
    if named is not None and (not isinstance(named, str) or named not in clients):
        raise UnknownClient()
    basic = _basic_credentials()
    if basic is None:
        return named or clients[0]
    client_id, secret = basic
    if secret or client_id not in clients:
        raise UnknownClient()
    if named is not None and named != client_id:
        raise InvalidRequest("The client is named twice, differently: by HTTP Basic and by client_id.")
    return client_id


def _basic_credentials() -> tuple[str, str] | None:
    """Return the HTTP Basic user name and password, form-decoded (RFC 6749 2.3.1), if the request sends them."""
    try:
        credentials = request.authorization
    except ValueError:  # werkzeug's Basic parsing raises on a non-ASCII value
        raise UnknownClient() from None
    if credentials is None or credentials.type != "basic":
        return None
    return unquote_plus(credentials.username or ""), unquote_plus(credentials.password or "")
