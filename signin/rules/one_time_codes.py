"""One-time codes: TOTP (RFC 6238) codes and their encrypted secrets, and recovery codes kept as digests.

- Codes are pyotp's: SHA-1, 6 digits, 30 s steps, one step of drift either
  way. A code is accepted only for a step later than the last one the user
  used (RFC 6238 5.2: no second use of a code, nor of an older one), which
  Redis decides atomically (``signin.store.used_codes``).
- Secrets are encrypted with Fernet (AES-CBC + HMAC, from ``cryptography``)
  under ``SIGNIN_TOTP_KEY``, a list of keys: the first encrypts, any
  decrypts, so a key is rotated by putting a new one first and running
  ``signin totp rotate-key``. Without it, the key is ``<instance>/totp.key``
  (mode 0600), made the first time one is needed.
- Recovery codes (80 random bits each) are stored only as SHA-256 digests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

from signin.store import used_codes

DIGITS, STEP_SECONDS, DRIFT_STEPS = 6, 30, 1
CODE_PATTERN = re.compile(r"[0-9]{6}")
KEY_FILE = "totp.key"
RECOVERY_CODES = 10
RECOVERY_CODE_BYTES = 10  # 80 bits, as 16 base32 characters
# A used step is remembered as long as a code of that step could still be accepted.
USED_STEP_SECONDS = (2 * DRIFT_STEPS + 2) * STEP_SECONDS


class NoKey(RuntimeError):
    """No key to encrypt TOTP secrets with: none configured, and the key file cannot be made."""


def new_secret() -> str:
    """Return a new TOTP secret: 160 random bits in base32, as authenticator apps take it."""
    return pyotp.random_base32()


def uri(secret: str, username: str) -> str:
    """Return the ``otpauth://`` URI that authenticator apps read (a QR code of it, or typed in)."""
    issuer = current_app.config["SIGNIN_TOTP_ISSUER"]
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """Return the step whose code ``code`` is, within the drift window around ``now``, or None."""
    if not CODE_PATTERN.fullmatch(code):
        return None
    totp, current = pyotp.TOTP(secret), int(now) // STEP_SECONDS
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate compared, in constant time: how much matches tells nothing.
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            found = step
    return found


def use_step(user_id: int, step: int) -> bool:
    """Record that a user used the code of ``step``; tell whether it was unused (and no later one was)."""
    redis, prefix = current_app.extensions["redis"].client, current_app.config["SIGNIN_REDIS_PREFIX"]
    return used_codes.use_step(redis, prefix, user_id, step, USED_STEP_SECONDS)


def now() -> float:
    """Return the time codes are checked at; tests move it."""
    return time.time()


def new_recovery_codes() -> list[str]:
    """Return fresh recovery codes, as the user is shown them once: four groups of four."""
    codes = []
    for _ in range(RECOVERY_CODES):
        text = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode("ascii").lower()
        codes.append("-".join(text[i : i + 4] for i in range(0, len(text), 4)))
    return codes


def recovery_digest(code: str) -> str:
    """Return what is stored of a recovery code: the SHA-256 of it without dashes or spaces, in lower case."""
    normalised = re.sub(r"[\s-]", "", code).lower()
    return hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()


def encrypt(secret: str) -> str:
    """Return a TOTP secret encrypted under the first key."""
    return _keys().encrypt(secret.encode("ascii")).decode("ascii")


def decrypt(stored: str) -> str:
    """Return the TOTP secret ``stored`` holds; raise ``InvalidToken`` if no key opens it."""
    return _keys().decrypt(stored.encode("ascii")).decode("ascii")


def rotate(stored: str) -> str:
    """Return ``stored`` re-encrypted under the first key."""
    return _keys().rotate(stored.encode("ascii")).decode("ascii")


def has_key() -> bool:
    """Tell whether a key is configured or its file exists, without making one."""
    return bool(current_app.config["SIGNIN_TOTP_KEY"]) or _key_file().exists()


def make_key_file() -> Path | None:
    """Make ``<instance>/totp.key`` (mode 0600) unless a key is configured or the file exists; return it if made."""
    if current_app.config["SIGNIN_TOTP_KEY"]:
        return None
    path = _key_file()
    with contextlib.suppress(FileExistsError):
        _create_key_file(path)
        return path
    return None


def _key_file() -> Path:
    return Path(current_app.instance_path, KEY_FILE)


def _create_key_file(path: Path) -> None:
    """Make the key file whole, or raise ``FileExistsError``: of processes racing to make it, one does.

    Written aside, then linked into place (which never replaces a file), so
    that no reader sees it half written.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(Fernet.generate_key() + b"\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(aside, path)
    finally:
        os.unlink(aside)


def _keys() -> MultiFernet:
    keys = current_app.extensions.get("signin.totp")
    if keys is None:
        keys = current_app.extensions["signin.totp"] = MultiFernet([Fernet(key) for key in _key_texts()])
    return keys


def _key_texts() -> Iterator[bytes]:
    configured = current_app.config["SIGNIN_TOTP_KEY"]
    if configured:
        yield from (key.encode("ascii") for key in configured)
        return
    path = _key_file()
    try:
        with contextlib.suppress(FileExistsError):
            _create_key_file(path)
        yield path.read_bytes().strip()
    except OSError as error:
        raise NoKey(f"no TOTP key: SIGNIN_TOTP_KEY is unset and {path} cannot be made ({error.strerror})") from None


__all__ = ["InvalidToken", "NoKey"]
