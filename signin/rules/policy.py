"""The password policy: the reasons a new password is refused.

After OWASP ASVS 5.0 6.2 and NIST SP 800-63B: at least
``SIGNIN_PASSWORD_MIN_LENGTH`` characters (default 8), at most 1024, no
composition rules, not among the 30,000 common passwords that zxcvbn ships
(compared case-insensitively), not the username nor containing it (both
normalised as usernames are), and on a change not the current password.
Applied wherever a password is set, never at sign-in, so passwords set
earlier keep signing in.
"""

from __future__ import annotations

import functools

from signin.store.models import username_key

MAX_LENGTH = 1024
# The reasons, in the order a refusal lists them.
TOO_SHORT, TOO_LONG, COMMON, LIKE_USERNAME, UNCHANGED = "too_short", "too_long", "common", "like_username", "unchanged"
REASONS = (TOO_SHORT, TOO_LONG, COMMON, LIKE_USERNAME, UNCHANGED)


@functools.cache
def common_passwords() -> frozenset[str]:
    """Return zxcvbn's list of common passwords, case-folded, as a set: built once, then a lookup per check."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(password.casefold() for password in FREQUENCY_LISTS["passwords"])


def refusals(password: str, username: str, *, min_length: int, unchanged: bool = False) -> list[str]:
    """Return why ``password`` may not become ``username``'s new password; empty if it may.

    ``unchanged``: whether it is the user's current password (the caller knows
    the current one, or can check it against the stored hash).
    """
    reasons = []
    if len(password) < min_length:
        reasons.append(TOO_SHORT)
    if len(password) > MAX_LENGTH:
        reasons.append(TOO_LONG)
    if password.casefold() in common_passwords():
        reasons.append(COMMON)
    if username_key(username) in username_key(password):
        reasons.append(LIKE_USERNAME)
    if unchanged:
        reasons.append(UNCHANGED)
    return reasons
