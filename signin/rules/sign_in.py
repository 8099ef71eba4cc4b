"""A sign-in: credentials checked at one hash's cost whatever fails, then checked again once its session exists.

A password set, a user disabled or TOTP turned on while the password was being
hashed must not leave a session behind, so what the sign-in depended on is
read before the hash and again after the session is made; if it changed, the
session ends and the sign-in is refused. A hash made with another method, or
imported in another format, is moved to the configured one once the sign-in
has succeeded, before the answer, and the user's ``last_sign_in_at`` is set.

A hash cheaper than the configured method (an imported md5-crypt or
``{SSHA}``) costs a check of the configured method as well, so that its user's
refusals take as long as an unknown user's.
"""

from __future__ import annotations

import logging

from signin.events import Event, Outcome, about, emit
from signin.rules import hash_formats, totp
from signin.rules.passwords import (
    HashingBusy,
    checking,
    configured_method,
    hash_password,
    needs_rehash,
    verify_at_full_cost,
    verify_dummy,
)
from signin.rules.refusals import AuthenticationFailed, MfaRequired
from signin.store.database import db
from signin.store.models import TotpFactor, User, utc_now
from signin.store.outages import DATABASE_OUTAGES
from signin.store.tokens import IssuedTokens, token_store

log = logging.getLogger(__name__)


def _checked(username: str, password: str) -> tuple[User, tuple[str, bool, bool]]:
    """Return the active user these credentials name, and what a sign-in depended on, at one hash's cost.

    Raises ``AuthenticationFailed`` with reason ``unknown_user``,
    ``bad_password`` or ``disabled``; each costs the same. What it returns
    beside the user (``_credentials``) is read before the hash, so that a
    change during it shows when the sign-in checks again.
    """
    user = User.find(username)
    if user is None:
        verify_dummy(password, configured_method())
        raise AuthenticationFailed("unknown_user")
    seen = (user.password_hash, user.is_active, totp.has_totp(user.id))
    if not verify_at_full_cost(user.password_hash, password, configured_method()):
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
    """Start a session for these credentials (and code, if the user has TOTP); emitted either way.

    Raises ``MfaRequired`` for a right password without the code the user
    needs, else ``AuthenticationFailed``: the password is checked whatever
    the code, so every refusal costs one hash.
    """
    try:
        with checking():
            user, verified = _checked(username, password)
        user_id, name = user.id, user.username  # read once: a commit from here on expires the row
        if verified[2]:
            totp.check_second_factor(user_id, name, otp)
        issued = token_store().issue(user_id, name, client_id, scope, address=address, user_agent=user_agent)
        # The hash took a while: a password set, a user disabled or TOTP turned on meanwhile
        # may have ended the user's sessions before this one existed.
        if _credentials(user_id) != verified:
            token_store().revoke_session(issued.session)
            raise AuthenticationFailed("credentials_changed")
    except MfaRequired:
        emit(Event.MFA_REQUIRED, Outcome.REFUSED, username=username, client_id=client_id)
        raise
    except AuthenticationFailed as failure:
        emit(Event.SIGNIN, Outcome.FAILURE, reason=failure.reason, username=username, client_id=client_id)
        raise
    session = issued.session
    _signed_in(user_id, name, verified[0], password)
    emit(Event.SIGNIN, Outcome.SUCCESS, **about(session))
    for evicted in issued.evicted:
        emit(Event.SESSION_EVICTED, Outcome.SUCCESS, username=session.username, session=evicted)
    return issued


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


def _signed_in(user_id: int, username: str, verified: str, password: str) -> None:
    """Set the user's ``last_sign_in_at``; move the verified hash to the configured method if made otherwise.

    The hash moves only if it is still the one verified (compare and set). The
    sign-in has succeeded by then: with every hashing slot taken or the
    database out of reach, the move (or the time) waits for a later sign-in.
    """
    method = configured_method()
    rehashed = None
    if needs_rehash(verified, method):
        try:
            rehashed = hash_password(password, method)
        except HashingBusy:
            log.info("password hash not moved to the configured method: HashingBusy")
    try:
        db.session.execute(db.update(User).filter_by(id=user_id).values(last_sign_in_at=utc_now()))
        moved = rehashed is not None and _moved(user_id, verified, rehashed)
        db.session.commit()
    except DATABASE_OUTAGES as outage:
        db.session.rollback()
        log.info("sign-in time not recorded, nor the hash moved: %s", type(outage).__name__)
        return
    if moved:
        form = hash_formats.format_of(verified)
        emit(Event.PASSWORD_REHASHED, Outcome.SUCCESS, username=username, from_format=form.label if form else None)


def _moved(user_id: int, verified: str, rehashed: str) -> bool:
    statement = db.update(User).filter_by(id=user_id, password_hash=verified).values(password_hash=rehashed)
    return bool(db.session.execute(statement).rowcount)  # type: ignore[attr-defined]
