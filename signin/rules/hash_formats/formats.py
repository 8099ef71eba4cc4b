"""Each password hash format signin reads: its prefixes, how to read its parameters, how to check a password.

Checks use the field's libraries: werkzeug, ``bcrypt``, argon2-cffi, the
standard library (Django's PBKDF2 and scrypt), and libpass, the maintained
passlib, for PHC PBKDF2, crypt(3), LDAP and phpass. Reading a hash
(``parse``) never hashes: it returns what one check would cost, from the
hash's parameters, or raises ``ValueError`` for a malformed one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import NamedTuple

import argon2
import bcrypt
from passlib import hash as passlib_hash
from passlib.ifc import PasswordHash
from werkzeug.security import DEFAULT_PBKDF2_ITERATIONS, check_password_hash

# What one check costs on the box these were measured on (2 cores, 2026-12), in nanoseconds a unit of work.
# Only ratios count: a hash's cost is compared with the configured method's, costed alike.
PBKDF2_NS = {"sha1": 470, "sha224": 520, "sha256": 520, "sha384": 2_100, "sha512": 2_100}  # an iteration
SCRYPT_NS = 1_000  # N * r * p
BCRYPT_NS = 85_000  # 2 ** cost
ARGON2_NS = 1_500  # KiB * passes
SHA_CRYPT_NS = 1_600  # a round, in libpass's pure-Python sha256-crypt and sha512-crypt
MD5_CRYPT_NS = 1_200_000  # a check (1,000 rounds, always)
PHPASS_NS = 2_300  # 2 ** count
LDAP_NS = 20_000  # a check (one salted digest)
BCRYPT_MEMORY = 4_096
# bcrypt reads a password's first 72 bytes only; the bcrypt package now refuses longer ones instead.
BCRYPT_MAX_BYTES = 72
# argon2-cffi runs one thread a lane: no more lanes than this.
ARGON2_MAX_LANES = 64
# hashlib.scrypt's ceiling on memory when checking a stored hash, whatever it asks for.
SCRYPT_MAX_MEMORY = 1 << 30

NUMBER = re.compile(r"[0-9]{1,10}")
HEX = re.compile(r"[0-9a-f]+")
BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
_argon2 = argon2.PasswordHasher()


class Cost(NamedTuple):
    """What one check of a password against a hash costs: time (on the box measured) and memory."""

    seconds: float
    memory: int = 0


class Format(NamedTuple):
    """A hash format: what its hashes start with, how to read one, how to check a password against one."""

    label: str
    prefixes: tuple[str, ...]
    parse: Callable[[str], Cost]
    verify: Callable[[str, str], bool]


def number(text: str) -> int:
    """Return a whole number written in plain digits (``int`` would take ``+1``, ``1_0`` and spaces)."""
    if not NUMBER.fullmatch(text):
        raise ValueError("not a number")
    return int(text)


def _b64(text: str, length: int) -> bytes:
    try:
        decoded = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(decoded) != length:
        raise ValueError("wrong length")
    return decoded


def scrypt_cost(n: int, r: int, p: int) -> Cost:
    if n < 2 or n & (n - 1) or not r or not p:
        raise ValueError("scrypt parameters out of range")
    return Cost(n * r * p * SCRYPT_NS * 1e-9, 128 * r * (n + p))


# werkzeug: "pbkdf2:sha256:600000$salt$hex", "scrypt:32768:8:1$salt$hex".
def werkzeug_method_cost(method: str) -> Cost:
    """Return what a check of a werkzeug method costs (``pbkdf2[:digest[:iterations]]``, ``scrypt[:n:r:p]``)."""
    name, *args = method.split(":")
    if name == "pbkdf2" and len(args) <= 2:
        digest = args[0] if args else "sha256"
        iterations = number(args[1]) if len(args) == 2 else DEFAULT_PBKDF2_ITERATIONS
        if digest not in PBKDF2_NS or not iterations:
            raise ValueError("pbkdf2 parameters out of range")
        return Cost(iterations * PBKDF2_NS[digest] * 1e-9)
    if name == "scrypt" and len(args) in (0, 3):
        n, r, p = (number(arg) for arg in args) if args else (2**15, 8, 1)
        return scrypt_cost(n, r, p)
    raise ValueError("not a werkzeug method")


def _werkzeug(text: str) -> Cost:
    method, _, rest = text.partition("$")
    salt, _, digest = rest.partition("$")
    if not salt or "$" in digest or not HEX.fullmatch(digest):
        raise ValueError("not method$salt$hex")
    return werkzeug_method_cost(method)


def _werkzeug_verify(text: str, password: str) -> bool:
    return check_password_hash(text, password)


# bcrypt: "$2b$12$" + 22 characters of salt + 31 of digest. Django wraps it: "bcrypt$" and "bcrypt_sha256$".
def _bcrypt(text: str) -> Cost:
    match = BCRYPT.fullmatch(text)
    if not match or not 4 <= int(match[1]) <= 31:
        raise ValueError("not a bcrypt hash")
    return Cost(2 ** int(match[1]) * BCRYPT_NS * 1e-9, BCRYPT_MEMORY)


def _bcrypt_verify(text: str, password: str) -> bool:
    return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], text.encode())


def _django_bcrypt_sha256_verify(text: str, password: str) -> bool:
    # Django's BCryptSHA256PasswordHasher: bcrypt of the password's SHA-256, in hex (64 bytes: nothing cut).
    return bcrypt.checkpw(hashlib.sha256(password.encode()).hexdigest().encode(), text.split("$", 1)[1].encode())


# argon2: the PHC string "$argon2id$v=19$m=...,t=...,p=...$salt$digest"; Django prefixes it with "argon2".
def _argon2_parse(text: str) -> Cost:
    try:
        parameters = argon2.extract_parameters(text)
    except argon2.exceptions.InvalidHashError:
        raise ValueError("not an argon2 hash") from None
    if parameters.type not in (argon2.Type.ID, argon2.Type.I) or not 1 <= parameters.parallelism <= ARGON2_MAX_LANES:
        raise ValueError("argon2 parameters out of range")
    return Cost(parameters.memory_cost * parameters.time_cost * ARGON2_NS * 1e-9, parameters.memory_cost * 1024)


def _argon2_verify(text: str, password: str) -> bool:
    try:
        return _argon2.verify(text, password)
    except argon2.exceptions.VerificationError:
        return False


# Django's own: "pbkdf2_sha256$iterations$salt$base64", "scrypt$n$salt$r$p$base64".
def _django_pbkdf2(digest: str, length: int) -> tuple[Parse, Verify]:
    def parse(text: str) -> Cost:
        _, iterations, _salt, hashed = _parts(text, 4)
        _b64(hashed, length)
        if not number(iterations):
            raise ValueError("no iterations")
        return Cost(number(iterations) * PBKDF2_NS[digest] * 1e-9)

    def verify(text: str, password: str) -> bool:
        _, iterations, salt, hashed = _parts(text, 4)
        made = hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), number(iterations))
        return hmac.compare_digest(made, _b64(hashed, length))

    return parse, verify


def _parts(text: str, count: int) -> list[str]:
    parts = text.split("$")
    if len(parts) != count or not all(parts):
        raise ValueError(f"not {count} parts")
    return parts


def _django_scrypt(text: str) -> Cost:
    _, n, _salt, r, p, hashed = _parts(text, 6)
    _b64(hashed, 64)
    return scrypt_cost(number(n), number(r), number(p))


def _django_scrypt_verify(text: str, password: str) -> bool:
    _, n, salt, r, p, hashed = _parts(text, 6)
    expected = _b64(hashed, 64)
    parameters = {"n": number(n), "r": number(r), "p": number(p)}
    memory = min(scrypt_cost(**parameters).memory + (1 << 20), SCRYPT_MAX_MEMORY)
    made = hashlib.scrypt(password.encode(), salt=salt.encode(), **parameters, maxmem=memory, dklen=64)
    return hmac.compare_digest(made, expected)


# libpass reads and checks these; a cost from its parameters.
Parse = Callable[[str], Cost]
Verify = Callable[[str, str], bool]


def _libpass(handler: type[PasswordHash], cost: Callable[[PasswordHash], Cost]) -> tuple[Parse, Verify]:
    def parse(text: str) -> Cost:
        return cost(handler.from_string(text))

    def verify(text: str, password: str) -> bool:
        return bool(handler.verify(password, text))

    return parse, verify


def _ldap_sha1(text: str) -> Cost:
    _b64(text.removeprefix("{SHA}"), 20)
    return Cost(LDAP_NS * 1e-9)


def _pbkdf2_phc(digest: str) -> Callable[[PasswordHash], Cost]:
    return lambda parsed: Cost(parsed.rounds * PBKDF2_NS[digest] * 1e-9)


def _rounds(ns: int, *, log2: bool = False) -> Callable[[PasswordHash], Cost]:
    return lambda parsed: Cost((2**parsed.rounds if log2 else parsed.rounds) * ns * 1e-9)


def _fixed(ns: int) -> Callable[[PasswordHash], Cost]:
    return lambda parsed: Cost(ns * 1e-9)


def _wrapped(prefix: str, parse: Parse, verify: Verify) -> tuple[Parse, Verify]:
    """Read and check a hash that Django wraps in ``prefix`` ("bcrypt$", "argon2")."""
    return (
        lambda text: parse(text.removeprefix(prefix)),
        lambda text, password: verify(text.removeprefix(prefix), password),
    )


DJANGO_ARGON2 = ("argon2$argon2id$", "argon2$argon2i$")
FORMATS = (
    Format("werkzeug", ("pbkdf2:", "scrypt:"), _werkzeug, _werkzeug_verify),
    Format("Django pbkdf2_sha256", ("pbkdf2_sha256$",), *_django_pbkdf2("sha256", 32)),
    Format("Django pbkdf2_sha1", ("pbkdf2_sha1$",), *_django_pbkdf2("sha1", 20)),
    Format("Django argon2", DJANGO_ARGON2, *_wrapped("argon2", _argon2_parse, _argon2_verify)),
    Format("Django bcrypt_sha256", ("bcrypt_sha256$",), _wrapped("bcrypt_sha256$", _bcrypt, _bcrypt_verify)[0],
           _django_bcrypt_sha256_verify),
    Format("Django bcrypt", ("bcrypt$",), *_wrapped("bcrypt$", _bcrypt, _bcrypt_verify)),
    Format("Django scrypt", ("scrypt$",), _django_scrypt, _django_scrypt_verify),
    Format("bcrypt", ("$2a$", "$2b$", "$2y$"), _bcrypt, _bcrypt_verify),
    Format("argon2", ("$argon2id$", "$argon2i$"), _argon2_parse, _argon2_verify),
    Format("PBKDF2 (PHC)", ("$pbkdf2$",), *_libpass(passlib_hash.pbkdf2_sha1, _pbkdf2_phc("sha1"))),
    Format("PBKDF2-SHA256 (PHC)", ("$pbkdf2-sha256$",), *_libpass(passlib_hash.pbkdf2_sha256, _pbkdf2_phc("sha256"))),
    Format("PBKDF2-SHA512 (PHC)", ("$pbkdf2-sha512$",), *_libpass(passlib_hash.pbkdf2_sha512, _pbkdf2_phc("sha512"))),
    Format("md5-crypt", ("$1$",), *_libpass(passlib_hash.md5_crypt, _fixed(MD5_CRYPT_NS))),
    Format("sha256-crypt", ("$5$",), *_libpass(passlib_hash.sha256_crypt, _rounds(SHA_CRYPT_NS))),
    Format("sha512-crypt", ("$6$",), *_libpass(passlib_hash.sha512_crypt, _rounds(SHA_CRYPT_NS))),
    Format("LDAP {SSHA}", ("{SSHA}",), *_libpass(passlib_hash.ldap_salted_sha1, _fixed(LDAP_NS))),
    Format("LDAP {SSHA256}", ("{SSHA256}",), *_libpass(passlib_hash.ldap_salted_sha256, _fixed(LDAP_NS))),
    Format("LDAP {SSHA512}", ("{SSHA512}",), *_libpass(passlib_hash.ldap_salted_sha512, _fixed(LDAP_NS))),
    Format("LDAP {SHA}", ("{SHA}",), _ldap_sha1, _libpass(passlib_hash.ldap_sha1, _fixed(LDAP_NS))[1]),
    Format("phpass", ("$P$", "$H$"), *_libpass(passlib_hash.phpass, _rounds(PHPASS_NS, log2=True))),
)
