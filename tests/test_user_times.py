"""When a user last signed in, and when their password last changed: set by every door, null until then."""

from __future__ import annotations

from datetime import datetime, timedelta

from werkzeug.security import generate_password_hash

from signin.store.database import db
from signin.store.models import User, username_key
from tests.conftest import PASSWORD, SIGNIN

PASSWORD_CHANGE = "/api/v2/account/password/"
NEW_PASSWORD = "a brand new passphrase of mine"


def times(app, username: str = "alice") -> tuple[datetime | None, datetime | None]:
    with app.app_context():
        user = User.find(username)
        return user.last_sign_in_at, user.password_changed_at


def recent(when: datetime | None) -> bool:
    return when is not None and abs(datetime.utcnow() - when) < timedelta(minutes=1)


def test_both_are_null_until_they_happen(app, alice):
    assert times(app) == (None, None)


def test_a_sign_in_sets_last_sign_in_at_and_a_refused_one_does_not(app, client, alice):
    client.post(SIGNIN, json={"username": "alice", "password": "wrong"})
    assert times(app) == (None, None)

    client.post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    signed_in, changed = times(app)
    assert recent(signed_in) and changed is None


def test_the_account_password_change_sets_password_changed_at(app, client, accounts, alice):
    token = accounts.signin()

    response = client.post(
        PASSWORD_CHANGE, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=accounts.bearer(token)
    )

    assert response.status_code == 204
    assert recent(times(app)[1])


def test_users_set_password_sets_password_changed_at(app, runner, alice):
    result = runner.invoke(args=["users", "set-password", "alice", "--password-stdin"], input=NEW_PASSWORD + "\n")

    assert result.exit_code == 0
    assert recent(times(app)[1])
    assert times(app)[0] is None


def test_a_re_hash_on_sign_in_is_no_password_change(app, client, accounts):
    with app.app_context():
        stored = generate_password_hash(PASSWORD, "pbkdf2:sha256:500")
        db.session.add(User(username="old", username_key=username_key("old"), password_hash=stored))
        db.session.commit()

    assert client.post(SIGNIN, json={"username": "old", "password": PASSWORD}).status_code == 200
    signed_in, changed = times(app, "old")
    assert recent(signed_in) and changed is None
