"""Account self-service: a bearer changes their password, sees and ends their sessions, turns TOTP on and off."""

from __future__ import annotations

from flask import Response, g

from signin.rules import refusals, sessions, totp, users
from signin.web.account.schemas import PasswordChangeSchema, TotpConfirmSchema, TotpDisableSchema, TotpEnrolSchema
from signin.web.account.views import bp, no_content
from signin.web.auth import require_token
from signin.web.errors import (
    NoSuchSession,
    TotpAlreadyEnabled,
    WeakPassword,
    WrongCode,
    WrongCurrentPassword,
    WrongPasswordOrCode,
)
from signin.web.parsing import load
from signin.web.throttle import credentials_refused, throttle_reauthentication

PASSWORD_CHANGE = PasswordChangeSchema()
TOTP_ENROL, TOTP_CONFIRM, TOTP_DISABLE = TotpEnrolSchema(), TotpConfirmSchema(), TotpDisableSchema()


@bp.post("/password/")
@require_token()
@throttle_reauthentication
def change_password() -> Response:
    """Replace the bearer's password; every other session of the user ends."""
    data = load(PASSWORD_CHANGE)
    try:
        users.change_password(g.session, data["current_password"], data["new_password"])
    except refusals.WrongPassword:
        credentials_refused()
        raise WrongCurrentPassword() from None
    except refusals.WeakPassword as weak:
        raise WeakPassword(weak.reasons) from None
    return no_content()


@bp.get("/sessions/")
@require_token()
def list_sessions() -> dict:
    """List the live sessions of the bearer's user, newest first."""
    return {"sessions": sessions.listed(g.session)}


@bp.delete("/sessions/<session_id>/")
@require_token()
def end_session(session_id: str) -> Response:
    """End one session of the bearer's user at once."""
    if not sessions.end_session(g.session, session_id):
        raise NoSuchSession()
    return no_content()


@bp.delete("/sessions/")
@require_token()
def end_other_sessions() -> dict:
    """End every session of the bearer's user but the bearer's own."""
    return {"ended": sessions.end_other_sessions(g.session)}


@bp.post("/totp/")
@require_token()
@throttle_reauthentication
def enrol_totp() -> dict:
    """Start TOTP for the bearer's user: a new secret, pending until confirmed with a code."""
    data = load(TOTP_ENROL)
    try:
        secret, otpauth_uri = totp.enrol(g.session, data["password"])
    except refusals.WrongPassword:
        credentials_refused()
        raise WrongCurrentPassword() from None
    except refusals.TotpAlreadyEnabled:
        raise TotpAlreadyEnabled() from None
    return {"secret": secret, "otpauth_uri": otpauth_uri}


@bp.post("/totp/confirm/")
@require_token()
@throttle_reauthentication
def confirm_totp() -> dict:
    """Turn the pending TOTP secret on with a code of it; every other session ends; the recovery codes, once."""
    data = load(TOTP_CONFIRM)
    try:
        codes = totp.confirm(g.session, data["code"])
    except refusals.WrongCode:
        credentials_refused()
        raise WrongCode() from None
    return {"recovery_codes": codes}


@bp.post("/totp/disable/")
@require_token()
@throttle_reauthentication
def disable_totp() -> Response:
    """Turn TOTP off for the bearer's user, given the password and a current or recovery code."""
    data = load(TOTP_DISABLE)
    try:
        totp.disable(g.session, data["password"], data["code"])
    except refusals.WrongCode:
        credentials_refused()
        raise WrongPasswordOrCode() from None
    return no_content()
