"""Hashes made elsewhere, by the software that makes them in the field: read, bounded, checked, moved on sign-in.

Django's own hashers (``django.contrib.auth.hashers``), the ``bcrypt``
package, argon2-cffi and libpass (crypt(3), LDAP, phpass, PHC PBKDF2) make
them; werkzeug makes its own. Cheap parameters where a test signs in (the
suite's method is cheap too); each library's defaults where only the
validator reads them.
"""

from __future__ import annotations

import json
import logging

import argon2
import bcrypt
import pytest
from django.conf import settings as django_settings
from passlib import hash as libpass
from werkzeug.security import generate_password_hash

from signin.rules import hash_formats
from signin.rules.hash_formats import check_hash
from signin.rules.passwords import _dummy_hash, verify_at_full_cost, verify_password
from signin.store.database import db
from signin.store.models import User, username_key
from tests.conftest import PASSWORD, SIGNIN

if not django_settings.configured:
    django_settings.configure(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"])

from django.contrib.auth import hashers as django

DEFAULT_METHOD = "scrypt:32768:8:3"
FAST = "pbkdf2:sha256:1000"


def cheap(hasher: type, **parameters: object) -> django.BasePasswordHasher:
    """A Django hasher with cheaper parameters, as a Django settings module would subclass it."""
    return type(f"Cheap{hasher.__name__}", (hasher,), parameters)()


def django_hash(hasher: django.BasePasswordHasher, password: str = PASSWORD) -> str:
    return hasher.encode(password, hasher.salt())


# Each format the contract lists, made cheaply by the software that makes it; the label signin gives it.
MADE = {
    "werkzeug pbkdf2": (lambda: generate_password_hash(PASSWORD, "pbkdf2:sha256:600"), "werkzeug"),
    "werkzeug scrypt": (lambda: generate_password_hash(PASSWORD, "scrypt:512:8:1"), "werkzeug"),
    "Django pbkdf2_sha256": (
        lambda: django.PBKDF2PasswordHasher().encode(PASSWORD, django.PBKDF2PasswordHasher().salt(), iterations=900),
        "Django pbkdf2_sha256",
    ),
    "Django pbkdf2_sha1": (
        lambda: django.PBKDF2SHA1PasswordHasher().encode(PASSWORD, "seasalt12345", iterations=900),
        "Django pbkdf2_sha1",
    ),
    "Django argon2": (
        lambda: django_hash(cheap(django.Argon2PasswordHasher, time_cost=1, memory_cost=256, parallelism=1)),
        "Django argon2",
    ),
    "Django bcrypt_sha256": (
        lambda: django_hash(cheap(django.BCryptSHA256PasswordHasher, rounds=4)),
        "Django bcrypt_sha256",
    ),
    "Django bcrypt": (lambda: django_hash(cheap(django.BCryptPasswordHasher, rounds=4)), "Django bcrypt"),
    "Django scrypt": (lambda: django.ScryptPasswordHasher().encode(PASSWORD, "seasalt12345", n=16), "Django scrypt"),
    "bcrypt $2b$": (lambda: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(), "bcrypt"),
    "bcrypt $2a$": (lambda: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode(), "bcrypt"),
    "bcrypt $2y$ (PHP's)": (lambda: libpass.bcrypt.using(ident="2y", rounds=4).hash(PASSWORD), "bcrypt"),
    "argon2id": (lambda: argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1).hash(PASSWORD), "argon2"),
    "argon2i": (
        lambda: argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1, type=argon2.Type.I).hash(PASSWORD),
        "argon2",
    ),
    "PHC $pbkdf2$": (lambda: libpass.pbkdf2_sha1.using(rounds=900).hash(PASSWORD), "PBKDF2 (PHC)"),
    "PHC $pbkdf2-sha256$": (lambda: libpass.pbkdf2_sha256.using(rounds=900).hash(PASSWORD), "PBKDF2-SHA256 (PHC)"),
    "PHC $pbkdf2-sha512$": (lambda: libpass.pbkdf2_sha512.using(rounds=200).hash(PASSWORD), "PBKDF2-SHA512 (PHC)"),
    "md5-crypt $1$": (lambda: libpass.md5_crypt.hash(PASSWORD), "md5-crypt"),
    "sha256-crypt $5$": (lambda: libpass.sha256_crypt.using(rounds=1000).hash(PASSWORD), "sha256-crypt"),
    "sha512-crypt $6$": (lambda: libpass.sha512_crypt.using(rounds=1000).hash(PASSWORD), "sha512-crypt"),
    "LDAP {SSHA}": (lambda: libpass.ldap_salted_sha1.hash(PASSWORD), "LDAP {SSHA}"),
    "LDAP {SSHA256}": (lambda: libpass.ldap_salted_sha256.hash(PASSWORD), "LDAP {SSHA256}"),
    "LDAP {SSHA512}": (lambda: libpass.ldap_salted_sha512.hash(PASSWORD), "LDAP {SSHA512}"),
    "LDAP {SHA}": (lambda: libpass.ldap_sha1.hash(PASSWORD), "LDAP {SHA}"),
    "phpass $P$": (lambda: libpass.phpass.using(rounds=7).hash(PASSWORD), "phpass"),
    "phpass $H$ (phpBB's)": (lambda: libpass.phpass.using(rounds=7, ident="H").hash(PASSWORD), "phpass"),
}


@pytest.fixture(scope="module")
def made() -> dict[str, str]:
    return {name: make() for name, (make, _) in MADE.items()}


@pytest.mark.parametrize("name", MADE)
def test_each_format_is_recognised_accepted_and_checked(made, name):
    stored = made[name]

    assert hash_formats.format_of(stored).label == MADE[name][1]
    assert check_hash(stored, FAST) is None
    assert verify_password(stored, PASSWORD) is True
    assert verify_password(stored, PASSWORD + "!") is False
    assert verify_password(stored, PASSWORD[:-1]) is False


@pytest.fixture(scope="module")
def field_defaults() -> dict[str, str]:
    """Hashes as each library makes them by default (the costs shops run with): a few seconds to make."""
    return {
        "Django pbkdf2_sha256": django_hash(django.PBKDF2PasswordHasher()),
        "Django argon2": django_hash(django.Argon2PasswordHasher()),
        "Django bcrypt_sha256": django_hash(django.BCryptSHA256PasswordHasher()),
        "Django scrypt": django_hash(django.ScryptPasswordHasher()),
        "bcrypt": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode(),
        "argon2id": argon2.PasswordHasher().hash(PASSWORD),
        "sha512-crypt": libpass.sha512_crypt.hash(PASSWORD),
        "phpass (WordPress's 2^13)": libpass.phpass.using(rounds=13).hash(PASSWORD),
        "PHC pbkdf2-sha256": libpass.pbkdf2_sha256.hash(PASSWORD),
    }


def test_each_librarys_default_cost_is_within_the_default_methods_bound(field_defaults):
    refused = {name: check_hash(stored, DEFAULT_METHOD) for name, stored in field_defaults.items()}

    assert refused == dict.fromkeys(field_defaults)


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("", "the password_hash is of no format signin reads (see docs/importing.md)"),
        ("hunter2", "the password_hash is of no format signin reads (see docs/importing.md)"),
        ("md5$salt$0123", "the password_hash is of no format signin reads (see docs/importing.md)"),
        ("$argon2d$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "the password_hash is of no format signin reads (see docs/importing.md)"),
        ("$2b$04$tooShort", "the password_hash is a malformed bcrypt hash"),
        ("$2b$03$" + "a" * 53, "the password_hash is a malformed bcrypt hash"),
        ("pbkdf2_sha256$many$salt$aGFzaA==", "the password_hash is a malformed Django pbkdf2_sha256 hash"),
        ("pbkdf2_sha256$+900$salt$" + "A" * 43 + "=", "the password_hash is a malformed Django pbkdf2_sha256 hash"),
        ("pbkdf2:sha256:1000$salt$not-hex", "the password_hash is a malformed werkzeug hash"),
        ("scrypt:1000:8:1$salt$00", "the password_hash is a malformed werkzeug hash"),
        ("pbkdf2:md4:1000$salt$00", "the password_hash is a malformed werkzeug hash"),
        ("$6$rounds=500$salt$" + "a" * 86, "the password_hash is a malformed sha512-crypt hash"),
        ("{SHA}c2hvcnQ=", "the password_hash is a malformed LDAP {SHA} hash"),
        ("{SSHA}!!!!", "the password_hash is a malformed LDAP {SSHA} hash"),
        ("$P$Zabcdefgh" + "a" * 22, "the password_hash is a malformed phpass hash"),
        ("$argon2id$v=19$m=65536,t=1,p=200$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "the password_hash is a malformed argon2 hash"),
        ("$2b$04$" + "a" * 600, "the password_hash is longer than 512 characters"),
    ],
)
def test_a_malformed_or_unknown_hash_is_refused_without_being_quoted(stored, why):
    assert check_hash(stored, DEFAULT_METHOD) == why
    assert stored[4:] not in why or not stored[4:]


@pytest.mark.parametrize(
    ("stored", "label"),
    [
        # The default method (scrypt N=2^15 r=8 p=3) costs about as much as bcrypt's cost 13: 10 checks, 16.
        ("$2b$17$" + "a" * 53, "bcrypt"),
        ("pbkdf2_sha256$40000000$salt$" + "A" * 43 + "=", "Django pbkdf2_sha256"),
        ("$argon2id$v=19$m=4194304,t=1,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "argon2"),  # 4 GiB
        ("$6$rounds=9999999$salt$" + "a" * 86, "sha512-crypt"),
        ("$P$Kabcdefgh" + "a" * 22, "phpass"),  # 2^22
    ],
)
def test_a_work_factor_past_ten_checks_of_the_configured_method_is_refused(stored, label):
    assert check_hash(stored, DEFAULT_METHOD) == (
        f"the password_hash is a {label} hash whose parameters cost more than 10 checks of the configured method"
    )


def test_the_bound_follows_the_configured_method(made):
    costly = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()

    assert check_hash(costly, DEFAULT_METHOD) is None
    assert "cost more than 10 checks" in check_hash(costly, FAST)


def test_bcrypt_counts_only_a_passwords_first_72_bytes_as_bcrypt_always_did():
    long = "é" * 40  # 80 bytes of UTF-8
    # bcrypt 5 refuses more than 72 bytes; PHP, Django before 5 and older bcrypts cut them, as here.
    stored = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()

    assert verify_password(stored, long) is True
    assert verify_password(stored, "é" * 36 + "other tail") is True
    assert verify_password(stored, "é" * 35) is False


def dummy_checks() -> int:
    """Return how many times a dummy hash has been asked for: once a dummy check."""
    info = _dummy_hash.cache_info()
    return info.hits + info.misses


def test_a_cheap_hash_costs_a_check_of_the_configured_method_as_well(made):
    before = dummy_checks()

    assert verify_at_full_cost(made["LDAP {SSHA}"], "wrong", FAST) is False
    assert verify_at_full_cost(made["werkzeug pbkdf2"], "wrong", FAST) is False  # 600 iterations, fewer than 1000
    assert verify_at_full_cost(made["md5-crypt $1$"], "wrong", DEFAULT_METHOD) is False
    assert dummy_checks() - before == 3
    # Dearer than the suite's 1000 iterations: the check of the hash is cost enough.
    assert verify_at_full_cost(generate_password_hash(PASSWORD, FAST), "wrong", FAST) is False
    assert verify_at_full_cost(made["bcrypt $2b$"], "wrong", FAST) is False
    assert verify_at_full_cost(made["md5-crypt $1$"], "wrong", FAST) is False
    assert dummy_checks() - before == 3


def add_user(app, username: str, stored: str) -> None:
    with app.app_context():
        db.session.add(User(username=username, username_key=username_key(username), password_hash=stored))
        db.session.commit()


def stored_hash(app, username: str) -> str:
    with app.app_context():
        return User.find(username).password_hash


@pytest.fixture
def audit_lines(caplog):
    caplog.set_level(logging.INFO, logger="signin.audit")
    return lambda: [json.loads(record.getMessage()) for record in caplog.records if record.name == "signin.audit"]


@pytest.mark.parametrize("name", MADE)
def test_signing_in_with_an_imported_hash_moves_it_to_the_configured_method(app, client, made, audit_lines, name):
    add_user(app, "imported", made[name])

    refused = client.post(SIGNIN, json={"username": "imported", "password": PASSWORD + "!"})
    unchanged = stored_hash(app, "imported")
    signed_in = client.post(SIGNIN, json={"username": "imported", "password": PASSWORD})

    assert (refused.status_code, unchanged) == (401, made[name])
    assert signed_in.status_code == 200
    rehashed = stored_hash(app, "imported")
    assert rehashed.startswith(FAST + "$")
    assert verify_password(rehashed, PASSWORD)
    moved = [line for line in audit_lines() if line["event"] == "password_rehashed"]
    assert [(line["username"], line["from_format"]) for line in moved] == [
        ("imported", "werkzeug" if name.startswith("werkzeug") else MADE[name][1])
    ]
    assert made[name] not in json.dumps(audit_lines())
    assert client.post(SIGNIN, json={"username": "imported", "password": PASSWORD}).status_code == 200
    label = moved[0]["from_format"]
    assert f'signin_password_rehashes_total{{from_format="{label}"}} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_a_bcrypt_user_signs_in_with_a_long_password_then_only_with_that_one(app, client):
    long = "é" * 40
    add_user(app, "php", bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode())

    assert client.post(SIGNIN, json={"username": "php", "password": long}).status_code == 200
    # Re-hashed from the whole password given: the first 72 bytes alone are no longer enough.
    assert client.post(SIGNIN, json={"username": "php", "password": "é" * 36 + "tail"}).status_code == 401
    assert client.post(SIGNIN, json={"username": "php", "password": long}).status_code == 200
