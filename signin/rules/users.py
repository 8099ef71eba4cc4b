"""Users: who may sign in, and the changes that end their sessions.

Every door (the account API, the CLI) calls these same rules: a password set
(in clear or as a hash made elsewhere), a disable or a delete ends every
session of the user before it returns; changing one's own password ends every
other. Each change emits its event, and each password set or change is the
time the user's ``password_changed_at`` says.
"""

from __future__ import annotations

import hmac

from flask import current_app

from signin.events import Event, Outcome, about, emit
from signin.rules import policy, totp
from signin.rules.passwords import configured_method, hash_password, verify_password
from signin.rules.refusals import UsernameTaken, WeakPassword, WrongPassword
from signin.store.database import db
from signin.store.models import User, username_key, utc_now
from signin.store.tokens import Session, token_store


def find(username: str) -> User | None:
    """Return the user a typed username names, if any (matched as sign-in matches it)."""
    return User.find(username)


def create_user(username: str, password: str) -> User:
    """Add a user whose password the policy allows, or raise ``UsernameTaken`` or ``WeakPassword``."""
    if User.find(username) is not None:
        raise UsernameTaken(username)
    _allowed(password, username)
    password_hash = hash_password(password, configured_method())
    user = User(username=username, username_key=username_key(username), password_hash=password_hash)
    db.session.add(user)
    db.session.commit()
    emit(Event.USER_CREATED, Outcome.SUCCESS, username=username)
    return user


def set_password(user: User, password: str) -> int:
    """Replace a user's password (the policy applies) and end every session they have; return how many."""
    _allowed(password, user.username, unchanged=verify_password(user.password_hash, password))
    return set_password_hash(user, hash_password(password, configured_method()))


def set_password_hash(user: User, password_hash: str, *, active: bool | None = None) -> int:
    """Give a user this password hash (and ``active``, if given), and end every session they have; return how many.

    The hash is one ``signin.rules.hash_formats.check_hash`` has accepted, or
    one made here with the configured method.
    """
    user.password_hash = password_hash
    user.password_changed_at = utc_now()
    if active is not None:
        user.is_active = active
    db.session.commit()
    ended = token_store().revoke_user(user.id)
    emit(Event.PASSWORD_SET, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
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
    emit(Event.PASSWORD_CHANGED, Outcome.SUCCESS, **about(session), sessions_ended=ended)
    return ended


def _allowed(password: str, username: str, *, unchanged: bool = False) -> None:
    min_length = current_app.config["SIGNIN_PASSWORD_MIN_LENGTH"]
    reasons = policy.refusals(password, username, min_length=min_length, unchanged=unchanged)
    if reasons:
        raise WeakPassword(reasons)


def _store_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password, configured_method())
    user.password_changed_at = utc_now()
    db.session.commit()


def disable(user: User) -> int:
    """Stop a user signing in, and end every session they have; return how many."""
    user.is_active = False
    db.session.commit()
    ended = token_store().revoke_user(user.id)
    emit(Event.USER_DISABLED, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
    return ended


def enable(user: User) -> None:
    """Let a disabled user sign in again."""
    user.is_active = True
    db.session.commit()
    emit(Event.USER_ENABLED, Outcome.SUCCESS, username=user.username)


def revoke(user: User) -> int:
    """End every session a user has (they can sign in again); return how many."""
    ended = token_store().revoke_user(user.id)
    emit(Event.USER_REVOKED, Outcome.SUCCESS, username=user.username, sessions_ended=ended)
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
    totp.forget(user_id)
    db.session.delete(user)
    db.session.commit()
    emit(Event.USER_DELETED, Outcome.SUCCESS, username=username, sessions_ended=ended)
    return ended
