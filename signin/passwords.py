"""Hash and verify passwords with werkzeug.security, at a constant cost."""

from __future__ import annotations

import functools
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

SALT_LENGTH = 16


def hash_password(password: str, method: str) -> str:
    """Return a salted hash of a password, made with ``method``."""
    return generate_password_hash(password, method=method, salt_length=SALT_LENGTH)


def verify_password(password_hash: str, password: str) -> bool:
    """Tell whether a password matches a stored hash; an unreadable hash never matches."""
    try:
        return check_password_hash(password_hash, password)
    except (ValueError, TypeError):
        return False


def verify_dummy(password: str, method: str) -> None:
    """Spend what one check with ``method`` costs, for a user who does not exist."""
    verify_password(_dummy_hash(method), password)


def needs_rehash(password_hash: str, method: str) -> bool:
    """Tell whether a hash was made with other parameters than ``method``."""
    return _method_of(password_hash) != _method_of(_dummy_hash(method))


def _method_of(password_hash: str) -> str:
    return password_hash.split("$", 1)[0]


@functools.cache
def _dummy_hash(method: str) -> str:
    # Made once per method; it also spells the method out in full, so that
    # "scrypt" and "scrypt:32768:8:1" compare equal in needs_rehash.
    return hash_password(secrets.token_urlsafe(16), method)
