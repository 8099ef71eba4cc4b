"""Users and their sessions: who may sign in, and what ends sessions.

The rules live here, and the views and the CLI both call them: a sign-in is
checked at one hash's cost whatever fails, and checked again once its
session exists, for a password set or a user disabled during the hash must
not leave a session behind; setting a password or disabling a user ends
every session, changing one's own ends every other. Each change writes its
audit line.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime

import sqlalchemy.exc
from flask import current_app
from sqlalchemy import CursorResult

from signin import audit, policy, totp
from signin.auth import token_store
from signin.errors import DATABASE_OUTAGES
from signin.events import Event, Outcome
from signin.extensions import db
from signin.models import RecoveryCode, TotpFactor, User, username_key
from signin.passwords import HashingBusy, checking, hash_password, needs_rehash, verify_dummy, verify_password
from signin.tokens import IssuedTokens, Session

log = logging.getLogger(__name__)


class AuthenticationFailed(Exception):
    """A sign-in that must be refused; ``reason`` is for the audit log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WrongPassword(Exception):
    """The current password given to re-authenticate is not the user's."""


class WeakPassword(Exception):
    """A new password the policy refuses; ``reasons`` says why (``signin.policy.REASONS``)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class UsernameTaken(Exception):
    """Another user already has a name that matches this one."""


class MfaRequired(AuthenticationFailed):
    """The password is right, but the account needs a one-time code."""

    def __init__(self) -> None:
        super().__init__("mfa_required")


class WrongCode(Exception):
    """A one-time code (or recovery code) given to a self-service endpoint is not valid, or nothing is pending."""


class TotpAlreadyEnabled(Exception):
    """The user has a confirmed TOTP factor already."""


def _method() -> str:
    return current_app.config["SIGNIN_PASSWORD_METHOD"]


def _checked(username: str, password: str) -> tuple[User, tuple[str, bool, bool]]:
    """Return the active user these credentials name, and what a sign-in depended on, at one hash's cost.

    Raises ``AuthenticationFailed`` with reason ``unknown_user``,
    ``bad_password`` or ``disabled``; each costs the same. What it returns
    beside the user (``_credentials``) is read before the hash, so that a
    change during it shows when the sign-in checks again.
    """
    user = User.find(username)
    if user is None:
        verify_dummy(password, _method())
        raise AuthenticationFailed("unknown_user")
    seen = (user.password_hash, user.is_active, has_totp(user.id))
    if not verify_password(user.password_hash, password):
        raise AuthenticationFailed("bad_password")
    if not user.is_active:
        raise AuthenticationFailed("disabled")
    return user, seen


def sign_in(
    username: str,
    password: str,
    *,
    otp: str | None = None,
    client_id: str,
    scope: str,
    address: str,
    user_agent: str,
) -> IssuedTokens:
    """Start a session for these credentials (and code, if the user has TOTP); audited either way.

    Raises ``MfaRequired`` for a right password without the code the user
    needs, else ``AuthenticationFailed``: the password is checked whatever
    the code, so every refusal costs one hash.
    """
    try:
        with checking():
            user, verified = _checked(username, password)
        user_id, name = user.id, user.username  # read once: a commit from here on expires the row
        if verified[2]:
            _second_factor(user_id, name, otp)
        issued = token_store().issue(user_id, name, client_id, scope, address=address, user_agent=user_agent)
        # The hash took a while: a password set, a user disabled or TOTP turned on meanwhile
        # may have ended the user's sessions before this one existed.
        if _credentials(user_id) != verified:
            token_store().revoke_session(issued.session)
            raise AuthenticationFailed("credentials_changed")
    except MfaRequired:
        audit.record(Event.MFA_REQUIRED, Outcome.REFUSED, username=username, client_id=client_id)
        raise
    except AuthenticationFailed as failure:
        audit.record(Event.SIGNIN, Outcome.FAILURE, reason=failure.reason, username=username, client_id=client_id)
        raise
    _rehash(user_id, verified[0], password)
    session = issued.session
    audit.record(Event.SIGNIN, Outcome.SUCCESS, **audit.about(session))
    for evicted in issued.evicted:
        audit.record(Event.SESSION_EVICTED, Outcome.SUCCESS, username=session.username, session=evicted)
    return issued


def _second_factor(user_id: int, username: str, otp: str | None) -> None:
    """Accept a current, unused TOTP code or an unused recovery code of the user, or raise."""
    if not otp:
        raise MfaRequired()
    factor = db.session.get(TotpFactor, user_id)
    if factor is None or not factor.confirmed:
        raise AuthenticationFailed("credentials_changed")
    if _code_accepted(user_id, factor, otp):
        return
    if _recovery_code_used(user_id, otp):
        audit.record(Event.RECOVERY_CODE_USED, Outcome.SUCCESS, username=username)
        return
    raise AuthenticationFailed("bad_code")


def _code_accepted(user_id: int, factor: TotpFactor, code: str) -> bool:
    step = totp.matching_step(totp.decrypt(factor.secret), code, totp.now())
    return step is not None and totp.use_step(user_id, step)


def _recovery_code_used(user_id: int, code: str) -> bool:
    # One UPDATE decides: of requests racing with the same code, exactly one changes the row.
    used: CursorResult = db.session.execute(  # type: ignore[assignment]  # an UPDATE's result has a rowcount
        db.update(RecoveryCode)
        .filter_by(user_id=user_id, digest=totp.recovery_digest(code), used_at=None)
        .values(used_at=datetime.now(UTC))
    )
    db.session.commit()
    return used.rowcount == 1


def _credentials(user_id: int) -> tuple[str, bool, bool] | None:
    """Read afresh, in a new transaction (one begun earlier may not see a change), what a sign-in depends on:

    the password hash, whether the user is active, whether they have TOTP.
    """
    db.session.commit()
    row = db.session.execute(
        db.select(User.password_hash, User.is_active, TotpFactor.confirmed)
        .outerjoin(TotpFactor, TotpFactor.user_id == User.id)
        .filter(User.id == user_id)
    ).one_or_none()
    return (row.password_hash, row.is_active, bool(row.confirmed)) if row else None


def _rehash(user_id: int, verified: str, password: str) -> None:
    """Move the hash a sign-in verified to the configured method, if made otherwise, unless it changed meanwhile.

    The sign-in has succeeded by then: with every hashing slot taken or the
    database out of reach, the move waits for a later sign-in.
    """
    if not needs_rehash(verified, _method()):
        return
    try:
        rehashed = hash_password(password, _method())
        db.session.execute(db.update(User).filter_by(id=user_id, password_hash=verified).values(password_hash=rehashed))
        db.session.commit()
    except (HashingBusy, *DATABASE_OUTAGES) as deferred:
        db.session.rollback()
        log.info("password hash not moved to the configured method: %s", type(deferred).__name__)


def create_user(username: str, password: str) -> User:
    """Add a user whose password the policy allows, or raise ``UsernameTaken`` or ``WeakPassword``."""
    if User.find(username) is not None:
        raise UsernameTaken(username)
    _allowed(password, username)
    user = User(
        username=username, username_key=username_key(username), password_hash=hash_password(password, _method())
    )
    db.session.add(user)
    db.session.commit()
    audit.record(Event.USER_CREATED, Outcome.SUCCESS, username=username)
    return user


def set_password(user: User, password: str) -> int:
    """Replace a user's password (the policy applies) and end every session they have; return how many."""
    _allowed(password, user.username, unchanged=verify_password(user.password_hash, password))
    _store_password(user, password)
    ended = token_store().revoke_user(user.id)
    audit.record(Event.PASSWORD_SET, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
    return ended


def change_password(session: Session, current: str, new: str) -> int:
    """Let a session's user replace their password: end every other session they have; return how many.

    Raises ``WrongPassword`` (checked at a sign-in's cost) or ``WeakPassword``.
    """
    user = db.session.get(User, session.user_id)
    if user is None or not verify_password(user.password_hash, current):
        raise WrongPassword()
    _allowed(new, user.username, unchanged=hmac.compare_digest(new.encode(), current.encode()))
    _store_password(user, new)
    ended = token_store().revoke_user(user.id, keep=session.ref)
    audit.record(Event.PASSWORD_CHANGED, Outcome.SUCCESS, **audit.about(session), sessions_ended=ended)
    return ended


def _allowed(password: str, username: str, *, unchanged: bool = False) -> None:
    min_length = current_app.config["SIGNIN_PASSWORD_MIN_LENGTH"]
    reasons = policy.refusals(password, username, min_length=min_length, unchanged=unchanged)
    if reasons:
        raise WeakPassword(reasons)


def _store_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password, _method())
    db.session.commit()


def disable(user: User) -> int:
    """Stop a user signing in, and end every session they have; return how many."""
    user.is_active = False
    db.session.commit()
    ended = token_store().revoke_user(user.id)
    audit.record(Event.USER_DISABLED, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
    return ended


def enable(user: User) -> None:
    """Let a disabled user sign in again."""
    user.is_active = True
    db.session.commit()
    audit.record(Event.USER_ENABLED, Outcome.SUCCESS, username=user.username)


def revoke(user: User) -> int:
    """End every session a user has (they can sign in again); return how many."""
    ended = token_store().revoke_user(user.id)
    audit.record(Event.USER_REVOKED, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
    return ended


def delete(user: User) -> int:
    """Remove a user, and end every session they have; return how many.

    Disabled first, then the sessions ended, then the row: a sign-in that
    checked again before the disable has its session by then, and is ended
    with the rest; one that checks after is refused. Should Redis fail, the
    user stays, disabled, for the delete to be run again.
    """
    user_id, username = user.id, user.username
    user.is_active = False
    db.session.commit()
    ended = token_store().revoke_user(user_id)
    _forget_totp(user_id)
    db.session.delete(user)
    db.session.commit()
    audit.record(Event.USER_DELETED, Outcome.SUCCESS, username=username, sessions_ended=ended)
    return ended


def sign_out(session: Session, *, everywhere: bool) -> int:
    """End the session, or every session of its user; return how many ended."""
    if everywhere:
        ended = token_store().revoke_user(session.user_id)
    else:
        token_store().revoke_session(session)
        ended = 1
    audit.record(Event.SIGNOUT, Outcome.SUCCESS, **audit.about(session), everywhere=everywhere, sessions_ended=ended)
    return ended


def end_session(owner: Session, public_id: str) -> bool:
    """End the session of ``owner``'s user that ``public_id`` names; tell whether there was one."""
    found = token_store().find_session(owner.user_id, public_id)
    if found is None:
        return False
    token_store().revoke_session(found)
    audit.record(Event.SESSION_ENDED, Outcome.SUCCESS, **audit.about(found), by_session=owner.public_id)
    return True


def end_other_sessions(owner: Session) -> int:
    """End every session of ``owner``'s user but ``owner``; return how many."""
    ended = token_store().revoke_user(owner.user_id, keep=owner.ref)
    audit.record(Event.SESSIONS_ENDED, Outcome.SUCCESS, **audit.about(owner), sessions_ended=ended)
    return ended


def enrol_totp(session: Session, password: str) -> tuple[str, str]:
    """Give the session's user a new TOTP secret, pending until confirmed; return it and its otpauth:// URI.

    Raises ``WrongPassword`` (checked at a sign-in's cost) or ``TotpAlreadyEnabled``.
    """
    user = _reauthenticated(session, password)
    username, secret = user.username, totp.new_secret()
    factor = db.session.get(TotpFactor, user.id)
    if factor is None:
        db.session.add(TotpFactor(user_id=user.id, secret=totp.encrypt(secret)))
        try:
            db.session.commit()
            return secret, totp.uri(secret, username)
        except sqlalchemy.exc.IntegrityError:  # another enrolment made the row meanwhile
            db.session.rollback()
            factor = db.session.get(TotpFactor, session.user_id)
    if factor is None or factor.confirmed:
        raise TotpAlreadyEnabled()
    factor.secret = totp.encrypt(secret)  # asking again replaces the pending secret
    db.session.commit()
    return secret, totp.uri(secret, username)


def confirm_totp(session: Session, code: str) -> list[str]:
    """Turn the pending TOTP secret on with a code of it; end every other session; return the recovery codes.

    Raises ``WrongCode`` for a wrong code or nothing pending.
    """
    factor = db.session.get(TotpFactor, session.user_id)
    if factor is None or factor.confirmed or not _code_accepted(session.user_id, factor, code):
        raise WrongCode()
    codes = totp.new_recovery_codes()
    db.session.execute(db.delete(RecoveryCode).filter_by(user_id=session.user_id))
    db.session.add_all(RecoveryCode(user_id=session.user_id, digest=totp.recovery_digest(c)) for c in codes)
    factor.confirmed = True
    db.session.commit()
    ended = token_store().revoke_user(session.user_id, keep=session.ref)
    audit.record(Event.TOTP_ENABLED, Outcome.SUCCESS, **audit.about(session), sessions_ended=ended)
    return codes


def disable_totp(session: Session, password: str, code: str) -> None:
    """Turn the session's user's TOTP off, given their password and a current or recovery code.

    Raises ``WrongCode`` if either is wrong, the same whichever.
    """
    try:
        _reauthenticated(session, password)
    except WrongPassword:
        raise WrongCode() from None  # before the code: a mistyped password must not spend a recovery code
    factor = db.session.get(TotpFactor, session.user_id)
    if factor is None or not factor.confirmed:
        raise WrongCode()
    if not (_code_accepted(session.user_id, factor, code) or _recovery_code_used(session.user_id, code)):
        raise WrongCode()
    _forget_totp(session.user_id)
    db.session.commit()
    audit.record(Event.TOTP_DISABLED, Outcome.SUCCESS, **audit.about(session))


def reset_totp(user: User) -> int:
    """Take a user's TOTP away (they lost the device) and end every session they have; return how many."""
    _forget_totp(user.id)
    db.session.commit()
    ended = token_store().revoke_user(user.id)
    audit.record(Event.TOTP_RESET, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
    return ended


def has_totp(user_id: int) -> bool:
    """Tell whether a user has TOTP on."""
    return bool(db.session.scalar(db.select(TotpFactor.confirmed).filter_by(user_id=user_id)))


def _reauthenticated(session: Session, password: str) -> User:
    user = db.session.get(User, session.user_id)
    if user is None or not verify_password(user.password_hash, password):
        raise WrongPassword()
    return user


def _forget_totp(user_id: int) -> None:
    db.session.execute(db.delete(RecoveryCode).filter_by(user_id=user_id))
    db.session.execute(db.delete(TotpFactor).filter_by(user_id=user_id))
