"""Tokens and what Redis holds of them: random parts, and their truncated SHA-256 digests.

A token is ``<selector>.<verifier>``: the selector (128 random bits) names its
session, the verifier (256 random bits) proves the token. Redis holds only
digests, truncated (NIST SP 800-107 5.1): a verifier's to 128 bits, so forging
one from a stolen copy of Redis takes 2**128 work; a selector's to 96 bits, for
it only names a key (two live sessions share one with odds under 10**-11 at a
billion sessions, and a shared key would refuse a token, never admit one).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

SELECTOR_BYTES = 16
VERIFIER_BYTES = 32
VERIFIER_DIGEST_BYTES = 16
SELECTOR_DIGEST_BYTES = 12
TOKEN_PATTERN = re.compile(r"([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def random_parts(*sizes: int) -> list[str]:
    """Return random token parts of these many bytes each, URL-safe, from one system call.

    ``secrets.token_urlsafe`` per part would ask the kernel once each, and
    under waitress every system call also hands the GIL to another thread.
    """
    raw, parts = secrets.token_bytes(sum(sizes)), []
    for size in sizes:
        part, raw = raw[:size], raw[size:]
        parts.append(_text(part))
    return parts


def digest(value: str, size: int = VERIFIER_DIGEST_BYTES) -> str:
    """Return the SHA-256 digest of a token part, truncated to ``size`` bytes, as Redis holds it."""
    return _text(hashlib.sha256(value.encode("ascii")).digest()[:size])


def session_ref(selector: str) -> str:
    """Return the name of a selector's session: the digest its Redis key holds."""
    return digest(selector, SELECTOR_DIGEST_BYTES)


def split(token: str) -> tuple[str, str] | None:
    """Return the ref of the session a token names and the digest of its verifier, or None if it is no token."""
    match = TOKEN_PATTERN.fullmatch(token)
    return (session_ref(match[1]), digest(match[2])) if match else None
