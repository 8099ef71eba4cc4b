"""Hash and verify passwords at a constant cost, a bounded number at a time.

The default is a ``werkzeug.security`` method, because other applications may
read the same user table and must keep verifying it. ``argon2id[:m:t:p]``
(argon2-cffi; m in KiB) is an opt-in for tables nothing else reads. Hashes of
either kind, and of every format imported (``signin.rules.hash_formats``),
keep verifying, and a successful sign-in moves them to the configured method.

Hashing releases the GIL, so unbounded it would take every core and every
server thread while a flood of sign-ins lasts, and token checks would wait
behind it. So at most ``SIGNIN_HASH_CONCURRENCY`` hashes run at once in a
process (default: one per core), and at most as many more wait, each for up
to ``SIGNIN_HASH_WAIT_SECONDS``; any other is refused at once with
``HashingBusy`` (a 503), leaving the other threads to everything else.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
from collections.abc import Iterator

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError
from flask import current_app
from werkzeug.security import generate_password_hash

from signin.rules import hash_formats
from signin.rules.hash_formats import ARGON2, ARGON2_DEFAULTS
from signin.settings import DEFAULTS

SALT_LENGTH = 16
ARGON2_PREFIX = "$argon2id$"


class HashingBusy(Exception):
    """Every hashing slot is taken, and so is the room to wait for one."""


class _Slots:
    """At most ``concurrency`` hashes at once; at most as many callers waiting, each for up to ``wait`` s."""

    def __init__(self, concurrency: int = DEFAULTS["SIGNIN_HASH_CONCURRENCY"], wait: float = 1.0) -> None:
        self.concurrency, self.wait = concurrency, wait
        self._hashing = threading.BoundedSemaphore(concurrency)
        self._admitted = threading.BoundedSemaphore(2 * concurrency)
        self._held = threading.local()

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        """Hold a slot for the block; a thread that holds one already goes on with it."""
        if getattr(self._held, "slot", False):
            yield
            return
        if not self._admitted.acquire(blocking=False):
            raise HashingBusy()
        try:
            if not self._hashing.acquire(timeout=self.wait):
                raise HashingBusy()
            self._held.slot = True
            try:
                yield
            finally:
                self._held.slot = False
                self._hashing.release()
        finally:
            self._admitted.release()


_slots = _Slots()


def checking() -> contextlib.AbstractContextManager[None]:
    """Hold a password check's slot for a whole sign-in, taken before anything else it does.

    A sign-in refused for want of one then costs no database query: under a
    flood, the refusals stay cheap. Checks inside the block use this slot.
    """
    return _slots.taken()


def bound(concurrency: int, wait: float) -> None:
    """Set how many hashes run at once in this process, and how long one may wait for its turn."""
    global _slots
    if (concurrency, wait) != (_slots.concurrency, _slots.wait):
        _slots = _Slots(concurrency, wait)


def configured_method() -> str:
    """Return the method new and re-hashed passwords are made with (``SIGNIN_PASSWORD_METHOD``)."""
    return current_app.config["SIGNIN_PASSWORD_METHOD"]


def hash_password(password: str, method: str) -> str:
    """Return a salted hash of a password, made with ``method``; raise ``HashingBusy``."""
    with _slots.taken():
        return _hash(password, method)


def _hash(password: str, method: str) -> str:
    if _is_argon2(method):
        return _argon2(method).hash(password)
    return generate_password_hash(password, method=method, salt_length=SALT_LENGTH)


def verify_password(password_hash: str, password: str) -> bool:
    """Tell whether a password matches a stored hash of any format; an unreadable hash never matches.

    Raises ``HashingBusy``.
    """
    with _slots.taken():
        return hash_formats.verify(password_hash, password)


def verify_at_full_cost(password_hash: str, password: str, method: str) -> bool:
    """Verify as ``verify_password`` does, spending at least one check of ``method`` whatever the hash.

    A hash cheaper than ``method`` (md5-crypt, ``{SSHA}``, a werkzeug hash of
    fewer iterations) is followed by a dummy check of ``method``, so that its
    user's refusals take as long as an unknown user's.
    """
    with _slots.taken():
        matched = hash_formats.verify(password_hash, password)
        if hash_formats.cheaper(password_hash, method):
            verify_dummy(password, method)
        return matched


def verify_dummy(password: str, method: str) -> None:
    """Spend what one check with ``method`` costs, for a user who does not exist."""
    verify_password(_dummy_hash(method), password)


def warm_up(method: str) -> None:
    """Make the dummy hash for ``method`` now, rather than in the first unknown user's sign-in."""
    _dummy_hash(method)


def needs_rehash(password_hash: str, method: str) -> bool:
    """Tell whether a hash was made with another method or other parameters than ``method``."""
    if _is_argon2(method):
        if not password_hash.startswith(ARGON2_PREFIX):
            return True
        try:
            return _argon2(method).check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
    return password_hash.split("$", 1)[0] != _dummy_hash(method).split("$", 1)[0]


def _is_argon2(method: str) -> bool:
    return method.split(":", 1)[0] == ARGON2


@functools.cache
def _argon2(method: str) -> PasswordHasher:
    _, *parameters = method.split(":")
    memory_cost, time_cost, parallelism = map(int, parameters) if parameters else ARGON2_DEFAULTS
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)


@functools.cache
def _dummy_hash(method: str) -> str:
    # Made once per method; it also spells the method out in full, so that
    # "scrypt" and "scrypt:32768:8:1" compare equal in needs_rehash.
    return _hash(secrets.token_urlsafe(16), method)
