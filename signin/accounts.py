"""Users: create them, change their passwords, and tell whether a sign-in is genuine."""

from __future__ import annotations

from flask import current_app

from signin.extensions import db
from signin.models import User, username_key
from signin.passwords import hash_password, needs_rehash, verify_dummy, verify_password


class AuthenticationFailed(Exception):
    """A sign-in that must be refused; ``reason`` is for the audit log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UsernameTaken(Exception):
    """Another user already has a name that matches this one."""


def _method() -> str:
    return current_app.config["SIGNIN_PASSWORD_METHOD"]


def authenticate(username: str, password: str) -> User:
    """Return the active user these credentials name, at one hash check's cost.

    Raises ``AuthenticationFailed`` with reason ``unknown_user``,
    ``bad_password`` or ``disabled``; each costs the same.
    """
    user = User.find(username)
    if user is None:
        verify_dummy(password, _method())
        raise AuthenticationFailed("unknown_user")
    if not verify_password(user.password_hash, password):
        raise AuthenticationFailed("bad_password")
    if not user.is_active:
        raise AuthenticationFailed("disabled")
    if needs_rehash(user.password_hash, _method()):
        user.password_hash = hash_password(password, _method())
        db.session.commit()
    return user


def is_active(user_id: int) -> bool:
    """Read afresh whether a user may sign in, in a new transaction (one begun earlier may not see a change)."""
    db.session.commit()
    return bool(db.session.scalar(db.select(User.is_active).filter_by(id=user_id)))


def create_user(username: str, password: str) -> User:
    """Add a user, or raise ``UsernameTaken``."""
    if User.find(username) is not None:
        raise UsernameTaken(username)
    user = User(
        username=username,
        username_key=username_key(username),
        password_hash=hash_password(password, _method()),
    )
    db.session.add(user)
    db.session.commit()
    return user


def set_password(user: User, password: str) -> None:
    """Replace a user's password."""
    user.password_hash = hash_password(password, _method())
    db.session.commit()
