"""Password hashes made elsewhere: which formats signin takes, which it refuses and why, and checking a password.

``check_hash`` is the one validator: the import (``signin users import``) and
the admin API both call it before they store a hash. A hash is taken as it
is, recognised by its prefix (``formats.FORMATS``), when it is well formed and
one check of it costs at most ``MAX_COST_RATIO`` checks of the configured
method, in time and in memory. ``verify`` checks a password against any hash
signin stores (its own methods' included); ``cheaper`` tells a sign-in when to
pay for a check of the configured method as well, so that a user with a cheap
imported hash is refused as slowly as an unknown one.
"""

from __future__ import annotations

import functools
import re

from signin.rules.hash_formats.formats import ARGON2_NS, FORMATS, Cost, Format, number, werkzeug_method_cost

# A hash may cost this many checks of the configured method, at most.
MAX_COST_RATIO = 10
# The memory a hash may use is reckoned from at least this much, for a configured method that uses next to none
# (PBKDF2): 10 times 16 MiB, as much as Django's argon2 asks for and more.
MEMORY_FLOOR = 16 << 20
# The longest hash the users table holds.
MAX_HASH_LENGTH = 512
# The opt-in method, and OWASP's parameters for it (m=19456 KiB, t=2, p=1).
ARGON2 = "argon2id"
ARGON2_DEFAULTS = (19456, 2, 1)

_BY_PREFIX = {prefix: form for form in FORMATS for prefix in form.prefixes}
# One pattern for every prefix, the longest first ("{SSHA256}" before "{SSHA}"): an import reads a million.
_PREFIX = re.compile("|".join(re.escape(prefix) for prefix in sorted(_BY_PREFIX, key=len, reverse=True)))


def format_of(password_hash: str) -> Format | None:
    """Return the format a hash's prefix names, if any."""
    found = _PREFIX.match(password_hash)
    return _BY_PREFIX[found[0]] if found else None


def check_hash(password_hash: str, method: str) -> str | None:
    """Return why a hash made elsewhere cannot be stored (never quoting it), or None if it can.

    ``method`` is the configured method (``SIGNIN_PASSWORD_METHOD``), which
    bounds what a check of the hash may cost.
    """
    if len(password_hash) > MAX_HASH_LENGTH:
        return f"the password_hash is longer than {MAX_HASH_LENGTH} characters"
    form = format_of(password_hash)
    if form is None:
        return "the password_hash is of no format signin reads (see docs/importing.md)"
    try:
        cost = form.parse(password_hash)
    except (ValueError, TypeError):
        return f"the password_hash is a malformed {form.label} hash"
    bound = method_cost(method)
    if cost.seconds > MAX_COST_RATIO * bound.seconds or cost.memory > MAX_COST_RATIO * max(bound.memory, MEMORY_FLOOR):
        return (
            f"the password_hash is a {form.label} hash whose parameters cost more than "
            f"{MAX_COST_RATIO} checks of the configured method"
        )
    return None


def verify(password_hash: str, password: str) -> bool:
    """Tell whether a password matches a hash of any format signin reads; an unreadable hash never matches."""
    form = format_of(password_hash)
    if form is None:
        return False
    try:
        return form.verify(password_hash, password)
    except (ValueError, TypeError):
        return False


def cheaper(password_hash: str, method: str) -> bool:
    """Tell whether checking a password against this hash costs less time than a check of ``method``.

    An unreadable hash counts as cheap: refusing it costs nothing.
    """
    form = format_of(password_hash)
    try:
        return form is None or form.parse(password_hash).seconds < method_cost(method).seconds
    except (ValueError, TypeError):
        return True


@functools.cache
def method_cost(method: str) -> Cost:
    """Return what a check of a configured method costs (``SIGNIN_PASSWORD_METHOD``: werkzeug's, or argon2id)."""
    name, *parameters = method.split(":")
    if name == ARGON2:
        memory, passes, _ = (number(value) for value in parameters) if parameters else ARGON2_DEFAULTS
        return Cost(memory * passes * ARGON2_NS * 1e-9, memory * 1024)
    return werkzeug_method_cost(method)

