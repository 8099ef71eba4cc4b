"""A user's second factor, TOTP: turned on and off, and checked at sign-in.

A secret is pending until a code of it confirms it; then sign-in needs a
current code or a recovery code, and every other session of the user ends.
The codes, the secrets' encryption and the recovery codes' digests are
``one_time_codes``'.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy.exc
from sqlalchemy import CursorResult

from signin.events import Event, Outcome, about, emit
from signin.rules import one_time_codes as codes
from signin.rules.passwords import verify_password
from signin.rules.refusals import AuthenticationFailed, MfaRequired, TotpAlreadyEnabled, WrongCode, WrongPassword
from signin.store.database import db
from signin.store.models import RecoveryCode, TotpFactor, User
from signin.store.tokens import Session, token_store


def check_second_factor(user_id: int, username: str, otp: str | None) -> None:
    """Accept a current, unused TOTP code or an unused recovery code of the user, or raise."""
    if not otp:
        raise MfaRequired()
    factor = db.session.get(TotpFactor, user_id)
    if factor is None or not factor.confirmed:
        raise AuthenticationFailed("credentials_changed")
    if code_accepted(user_id, factor, otp):
        return
    if recovery_code_used(user_id, otp):
        emit(Event.RECOVERY_CODE_USED, Outcome.SUCCESS, username=username)
        return
    raise AuthenticationFailed("bad_code")


def code_accepted(user_id: int, factor: TotpFactor, code: str) -> bool:
    """Tell whether ``code`` is a current code of the factor's secret, unused until now (and now used)."""
    step = codes.matching_step(codes.decrypt(factor.secret), code, codes.now())
    return step is not None and codes.use_step(user_id, step)


def recovery_code_used(user_id: int, code: str) -> bool:
    """Spend one of the user's unused recovery codes; tell whether ``code`` was one."""
    # One UPDATE decides: of requests racing with the same code, exactly one changes the row.
    used: CursorResult = db.session.execute(  # type: ignore[assignment]  # an UPDATE's result has a rowcount
        db.update(RecoveryCode)
        .filter_by(user_id=user_id, digest=codes.recovery_digest(code), used_at=None)
        .values(used_at=datetime.now(UTC))
    )
    db.session.commit()
    return used.rowcount == 1


def enrol(session: Session, password: str) -> tuple[str, str]:
    """Give the session's user a new TOTP secret, pending until confirmed; return it and its otpauth:// URI.

    Raises ``WrongPassword`` (checked at a sign-in's cost) or ``TotpAlreadyEnabled``.
    """
    user = _reauthenticated(session, password)
    username, secret = user.username, codes.new_secret()
    factor = db.session.get(TotpFactor, user.id)
    if factor is None:
        db.session.add(TotpFactor(user_id=user.id, secret=codes.encrypt(secret)))
        try:
            db.session.commit()
            return secret, codes.uri(secret, username)
        except sqlalchemy.exc.IntegrityError:  # another enrolment made the row meanwhile
            db.session.rollback()
            factor = db.session.get(TotpFactor, session.user_id)
    if factor is None or factor.confirmed:
        raise TotpAlreadyEnabled()
    factor.secret = codes.encrypt(secret)  # asking again replaces the pending secret
    db.session.commit()
    return secret, codes.uri(secret, username)


def confirm(session: Session, code: str) -> list[str]:
    """Turn the pending TOTP secret on with a code of it; end every other session; return the recovery codes.

    Raises ``WrongCode`` for a wrong code or nothing pending.
    """
    factor = db.session.get(TotpFactor, session.user_id)
    if factor is None or factor.confirmed or not code_accepted(session.user_id, factor, code):
        raise WrongCode()
    recovery = codes.new_recovery_codes()
    db.session.execute(db.delete(RecoveryCode).filter_by(user_id=session.user_id))
    db.session.add_all(RecoveryCode(user_id=session.user_id, digest=codes.recovery_digest(c)) for c in recovery)
    factor.confirmed = True
    db.session.commit()
    ended = token_store().revoke_user(session.user_id, keep=session.ref)
    emit(Event.TOTP_ENABLED, Outcome.SUCCESS, **about(session), sessions_ended=ended)
    return recovery


def disable(session: Session, password: str, code: str) -> None:
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
    if not (code_accepted(session.user_id, factor, code) or recovery_code_used(session.user_id, code)):
        raise WrongCode()
    forget(session.user_id)
    db.session.commit()
    emit(Event.TOTP_DISABLED, Outcome.SUCCESS, **about(session))


def reset(user: User) -> int:
    """Take a user's TOTP away (they lost the device) and end every session they have; return how many."""
    forget(user.id)
    db.session.commit()
    ended = token_store().revoke_user(user.id)
    emit(Event.TOTP_RESET, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
    return ended


def has_totp(user_id: int) -> bool:
    """Tell whether a user has TOTP on."""
    return bool(db.session.scalar(db.select(TotpFactor.confirmed).filter_by(user_id=user_id)))


def _reauthenticated(session: Session, password: str) -> User:
    user = db.session.get(User, session.user_id)
    if user is None or not verify_password(user.password_hash, password):
        raise WrongPassword()
    return user


def forget(user_id: int) -> None:
    """Delete a user's TOTP factor and recovery codes (the caller commits)."""
    db.session.execute(db.delete(RecoveryCode).filter_by(user_id=user_id))
    db.session.execute(db.delete(TotpFactor).filter_by(user_id=user_id))
