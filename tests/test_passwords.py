"""Password hashing: werkzeug by default, argon2id on request, every old hash still verifying."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from signin.rules.passwords import _dummy_hash, hash_password, needs_rehash, verify_dummy, verify_password, warm_up
from signin.store.models import User
from tests.conftest import PASSWORD, SIGNIN, create_tables

CHEAP_ARGON2 = "argon2id:1024:1:1"


def test_the_default_method_meets_owasp(app):
    method = app.config["SIGNIN_PASSWORD_METHOD"]
    from config import Config

    stored = hash_password(PASSWORD, Config.SIGNIN_PASSWORD_METHOD)

    assert method == "pbkdf2:sha256:1000"  # the suite's cheap stand-in
    assert stored.startswith("scrypt:32768:8:3$")
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")


@pytest.mark.parametrize("method", ["pbkdf2:sha256:1000", "scrypt:1024:8:1", "pbkdf2:sha512:2000", CHEAP_ARGON2])
def test_hashes_of_every_method_verify(method):
    stored = hash_password(PASSWORD, method)

    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, "wrong")
    assert PASSWORD not in stored


def test_hashes_made_by_plain_werkzeug_verify():
    assert verify_password(generate_password_hash(PASSWORD), PASSWORD)


@pytest.mark.parametrize("stored", ["", "plaintext", "md5$x$y", "scrypt:99:1:1$salt$00", "$argon2id$v=19$garbage"])
def test_an_unreadable_hash_is_a_mismatch_not_an_error(stored):
    assert verify_password(stored, PASSWORD) is False


@pytest.mark.parametrize(
    ("stored_with", "configured", "expected"),
    [
        ("pbkdf2:sha256:1000", "pbkdf2:sha256:1000", False),
        ("pbkdf2:sha256:500", "pbkdf2:sha256:1000", True),
        ("scrypt:1024:8:1", "pbkdf2:sha256:1000", True),
        ("pbkdf2:sha256:1000", CHEAP_ARGON2, True),
        (CHEAP_ARGON2, CHEAP_ARGON2, False),
        ("argon2id:1024:1:2", CHEAP_ARGON2, True),
        (CHEAP_ARGON2, "pbkdf2:sha256:1000", True),
    ],
)
def test_needs_rehash(stored_with, configured, expected):
    assert needs_rehash(hash_password(PASSWORD, stored_with), configured) is expected


def test_a_bare_method_name_means_its_defaults():
    assert not needs_rehash(generate_password_hash(PASSWORD, "pbkdf2:sha256"), "pbkdf2:sha256")
    assert needs_rehash(generate_password_hash(PASSWORD, "pbkdf2:sha256"), "pbkdf2:sha256:1000")


def test_a_dummy_check_returns_nothing_and_raises_nothing():
    assert verify_dummy(PASSWORD, "pbkdf2:sha256:1000") is None
    assert verify_dummy(PASSWORD, CHEAP_ARGON2) is None


def test_after_warm_up_no_check_makes_a_hash():
    method = "pbkdf2:sha256:1001"  # no other test uses it
    warm_up(method)
    made = _dummy_hash.cache_info().misses

    verify_dummy(PASSWORD, method)
    needs_rehash(hash_password(PASSWORD, method), method)

    assert _dummy_hash.cache_info().misses == made


def test_werkzeug_hashes_move_to_argon2id_on_signin(settings, accounts):
    from signin import create_app
    from signin.store.database import db

    app = create_app({**settings, "SIGNIN_PASSWORD_METHOD": CHEAP_ARGON2})
    with app.app_context():
        create_tables()
        db.session.add(
            User(username="old", username_key="old", password_hash=hash_password(PASSWORD, "pbkdf2:sha256:1000"))
        )
        db.session.commit()

    assert app.test_client().post(SIGNIN, json={"username": "old", "password": PASSWORD}).status_code == 200

    with app.app_context():
        stored = db.session.scalar(db.select(User.password_hash).filter_by(username="old"))
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert app.test_client().post(SIGNIN, json={"username": "old", "password": PASSWORD}).status_code == 200
