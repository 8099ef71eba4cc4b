"""The ``signin`` command group, run the way an operator runs it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from importlib.metadata import version

import pytest

from signin.store.database import db
from signin.store.models import Service, User
from signin.store.tokens import token_store
from tests.conftest import PASSWORD, SIGNIN, Accounts, SignInLoop, drop_tables

ME = "/api/v2/account/me/"


def test_init_db_with_admin_creates_admin_once(app, runner, client):
    first = runner.invoke(args=["init-db", "--admin"])
    password = first.output.strip().splitlines()[-1]

    assert first.exit_code == 0
    assert "Created user 'admin'" in first.output
    assert client.post(SIGNIN, json={"username": "admin", "password": password}).status_code == 200
    second = runner.invoke(args=["init-db", "--admin"])
    assert second.exit_code == 0
    assert second.output == (
        "Database ready.\nUser 'admin' exists. To set its password: signin users set-password admin\n"
    )


def test_a_command_prints_its_audit_line_to_standard_error_and_no_secret(settings, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "REDIS_URL": settings["REDIS_URL"],
        "SIGNIN_REDIS_PREFIX": settings["SIGNIN_REDIS_PREFIX"],
    }
    command = [sys.executable, "-c", "from signin.cli import main; main()", "init-db", "--admin"]

    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60)

    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["event"], line["outcome"], line["username"]) == ("user_created", "success", "admin")
    assert result.stdout.strip().splitlines()[-1] not in result.stderr  # the password


def test_users_create_reads_the_password_from_stdin(runner, client):
    result = runner.invoke(args=["users", "create", "dora", "--password-stdin"], input=PASSWORD + "\n")

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert client.post(SIGNIN, json={"username": "dora", "password": PASSWORD}).status_code == 200


def test_users_create_prompts_twice_for_the_password(runner, client):
    result = runner.invoke(args=["users", "create", "dora"], input=f"{PASSWORD}\n{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert client.post(SIGNIN, json={"username": "dora", "password": PASSWORD}).status_code == 200


def test_users_create_refuses_a_taken_name(runner, alice):
    result = runner.invoke(args=["users", "create", "ALICE", "--password-stdin"], input="x\n")

    assert result.exit_code == 1
    assert "already exists" in result.output


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "a username is 1 to 150 characters long, and 600 once normalised"),
        ("a" * 151, "a username is 1 to 150 characters long, and 600 once normalised"),
        ("\ufdfa" * 34, "a username is 1 to 150 characters long, and 600 once normalised"),  # 612 once normalised
        ("dora\x00", "a name is valid text, without NUL"),
        ("dora\udcff", "a name is valid text, without NUL"),
    ],
)
def test_users_create_refuses_a_name_no_database_can_hold(app, runner, name, message):
    result = runner.invoke(args=["users", "create", name, "--password-stdin"], input="x\n")

    assert result.exit_code == 2
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(db.select(User.id).limit(1)) is None


@pytest.mark.parametrize(
    "command",
    [
        "users set-password",
        "users disable",
        "users enable",
        "users revoke",
        "services add",
        "services remove",
    ],
)
def test_every_command_naming_a_user_or_service_refuses_a_nul(runner, command):
    result = runner.invoke(args=[*command.split(), "dora\x00"], input="x\n")

    assert (result.exit_code, "a name is valid text, without NUL" in result.output) == (2, True)


def test_users_create_refuses_an_empty_password(runner):
    result = runner.invoke(args=["users", "create", "dora", "--password-stdin"], input="\n")

    assert result.exit_code == 2


def test_set_password_ends_every_session(runner, client, accounts, alice):
    token = accounts.signin()

    result = runner.invoke(args=["users", "set-password", "alice", "--password-stdin"], input="new secret\n")

    assert result.exit_code == 0
    assert "ended 1 session(s)" in result.output
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 401
    assert client.post(SIGNIN, json={"username": "alice", "password": "new secret"}).status_code == 200


def test_disable_refuses_signin_and_ends_every_session(runner, client, accounts, alice):
    tokens = [accounts.signin(), accounts.signin()]

    result = runner.invoke(args=["users", "disable", "alice"])

    assert result.exit_code == 0
    assert "ended 2 session(s)" in result.output
    for token in tokens:
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 401
    assert runner.invoke(args=["users", "enable", "alice"]).exit_code == 0
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 200


def test_a_user_disabled_during_a_sign_ins_password_check_keeps_no_session(make_app):
    # A check long enough (~0.4 s here) for `users disable` to run in the middle of it.
    app = make_app({"SIGNIN_PASSWORD_METHOD": "pbkdf2:sha256:1500000"})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    answers = []
    signin = threading.Thread(
        target=lambda: answers.append(app.test_client().post(SIGNIN, json={"username": "alice", "password": PASSWORD}))
    )

    signin.start()
    time.sleep(0.1)
    disabled = app.test_cli_runner().invoke(args=["users", "disable", "alice"])
    signin.join()

    assert (disabled.exit_code, answers[0].status_code) == (0, 401)
    assert app.test_cli_runner().invoke(args=["users", "list"]).output == "alice\tdisabled\tno-totp\t0 session(s)\n"


def test_revoke_ends_every_session_of_one_user(runner, client, accounts, alice):
    accounts.create("bob")
    alices, bobs = accounts.signin(), accounts.signin("bob")

    result = runner.invoke(args=["users", "revoke", "alice"])

    assert result.exit_code == 0
    assert "Ended 1 session(s)" in result.output
    assert client.get(ME, headers=accounts.bearer(alices)).status_code == 401
    assert client.get(ME, headers=accounts.bearer(bobs)).status_code == 200
    assert client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}).status_code == 200


def test_users_list(runner, accounts, alice):
    accounts.create("bob", active=False)
    accounts.signin()

    result = runner.invoke(args=["users", "list"])

    assert result.output.splitlines() == [
        "alice\tactive\tno-totp\t1 session(s)",
        "bob\tdisabled\tno-totp\t0 session(s)",
    ]


def test_unknown_user_is_an_error(runner):
    result = runner.invoke(args=["users", "disable", "nobody"])

    assert result.exit_code == 1
    assert "no user named 'nobody'" in result.output


def test_services_add_prints_a_secret_once_and_stores_its_digest(app, runner):
    result = runner.invoke(args=["services", "add", "billing"])
    secret = result.output.strip().splitlines()[-1]

    assert result.exit_code == 0
    assert len(secret) == 43
    with app.app_context():
        stored = db.session.scalar(db.select(Service).filter_by(name="billing"))
        assert stored.secret_digest == hashlib.sha256(secret.encode()).hexdigest()
    assert runner.invoke(args=["services", "add", "billing"]).exit_code == 1
    listed = runner.invoke(args=["services", "list"]).output
    assert listed.startswith("billing\t")
    assert secret not in listed


def test_services_remove_unknown_is_an_error(runner):
    assert runner.invoke(args=["services", "remove", "nobody"]).exit_code == 1


def test_passwords_are_stored_hashed(app, runner):
    runner.invoke(args=["users", "create", "dora", "--password-stdin"], input=PASSWORD + "\n")

    with app.app_context():
        stored = db.session.scalar(db.select(User.password_hash).filter_by(username="dora"))
    assert PASSWORD not in stored
    assert stored.startswith("pbkdf2:sha256:1000$")


def test_the_console_script_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-c", "from signin.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    for command in ("init-db", "users", "services", "serve"):
        assert command in result.stdout


def cli_env(app) -> dict[str, str]:
    """The environment a `signin` process needs to work on the same stores as ``app``."""
    return {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app.config["REDIS_URL"],
        "SIGNIN_REDIS_PREFIX": app.config["SIGNIN_REDIS_PREFIX"],
        "SIGNIN_PASSWORD_METHOD": app.config["SIGNIN_PASSWORD_METHOD"],
    }


def test_sign_ins_with_the_old_password_racing_set_password_in_another_process_keep_no_session(make_app):
    # Checks of ~0.3 s, so `signin users set-password` (a process of its own) lands inside them.
    app = make_app({"SIGNIN_PASSWORD_METHOD": "pbkdf2:sha256:1000000", "SIGNIN_HASH_CONCURRENCY": 8})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    with SignInLoop(app) as loop:
        time.sleep(0.5)
        command = [sys.executable, "-c", "from signin.cli import main; main()", "users", "set-password", "alice"]
        result = subprocess.run(
            [*command, "--password-stdin"],
            env=cli_env(app),
            input="a whole new passphrase\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        time.sleep(0.5)  # sign-ins that began before it finish after it
    tokens = loop.tokens

    assert result.returncode == 0, result.stderr
    assert tokens  # some sign-ins did get through before the change...
    live = [t for t in tokens if app.test_client().get(ME, headers=accounts.bearer(t)).status_code == 200]
    assert live == []  # ...and none of them outlived it
    assert app.test_cli_runner().invoke(args=["users", "list"]).output == "alice\tactive\tno-totp\t0 session(s)\n"


@pytest.mark.parametrize(
    ("command", "password", "reasons"),
    [
        (["users", "create", "dora"], "dragon", "too_short, common"),
        (["users", "create", "dora"], "dora the explorer", "like_username"),
        (["users", "set-password", "alice"], PASSWORD, "unchanged"),
        (["users", "set-password", "alice"], "password1", "common"),
    ],
)
def test_the_cli_applies_the_password_policy(app, runner, accounts, alice, command, password, reasons):
    result = runner.invoke(args=[*command, "--password-stdin"], input=password + "\n")

    assert result.exit_code == 1
    assert result.output == f"Error: the password policy refuses that password: {reasons}\n"
    with app.app_context():
        assert User.find("dora") is None
    assert accounts.signin()["token_type"] == "Bearer"  # alice's password is unchanged


def test_users_delete_ends_every_session_then_removes_the_user(app, runner, client, accounts, alice):
    tokens = [accounts.signin(), accounts.signin()]

    refused = runner.invoke(args=["users", "delete", "alice"], input="n\n")
    assert refused.exit_code == 1
    assert client.get(ME, headers=accounts.bearer(tokens[0])).status_code == 200

    result = runner.invoke(args=["users", "delete", "alice"], input="y\n")

    assert result.exit_code == 0
    assert result.output.endswith("Deleted 'alice'; ended 2 session(s).\n")
    for token in tokens:
        assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    with app.app_context():
        assert User.find("alice") is None
    assert runner.invoke(args=["users", "delete", "alice", "--yes"]).exit_code == 1


def test_a_deleted_users_id_is_never_given_to_another(app, runner, accounts, alice):
    assert runner.invoke(args=["users", "delete", "alice", "--yes"]).exit_code == 0

    bob = accounts.create("bob")

    assert bob > alice


def test_sign_ins_racing_a_delete_in_another_process_keep_no_session(make_app):
    app = make_app({"SIGNIN_PASSWORD_METHOD": "pbkdf2:sha256:1000000", "SIGNIN_HASH_CONCURRENCY": 8})
    accounts = Accounts(app, app.test_client())
    alice = accounts.create("alice")
    with SignInLoop(app) as loop:
        time.sleep(0.5)
        command = [sys.executable, "-c", "from signin.cli import main; main()", "users", "delete", "alice", "--yes"]
        result = subprocess.run(command, env=cli_env(app), capture_output=True, text=True, timeout=60)
        time.sleep(0.5)  # sign-ins that began before it finish after it
    tokens = loop.tokens

    assert result.returncode == 0, result.stderr
    assert tokens
    assert [t for t in tokens if app.test_client().get(ME, headers=accounts.bearer(t)).status_code == 200] == []
    with app.app_context():
        assert token_store().redis.exists(f"{app.config['SIGNIN_REDIS_PREFIX']}u:{alice}") == 0


def test_users_sessions_prints_the_account_apis_fields(runner, client, accounts, alice):
    first = accounts.signin()
    client.post(SIGNIN, json={"username": "alice", "password": PASSWORD}, headers={"User-Agent": "curl/8.5.0"})

    result = runner.invoke(args=["users", "sessions", "alice"])

    listed = [json.loads(line) for line in result.output.splitlines()]
    mine = client.get("/api/v2/account/sessions/", headers=accounts.bearer(first)).get_json()["sessions"]
    assert listed == [dict(session, current=False) for session in mine]
    # Both signed in within the same second: either may come first.
    assert sorted(session["user_agent"] for session in listed) == ["Werkzeug/" + version("werkzeug"), "curl/8.5.0"]


def test_a_database_without_tables_is_named_by_every_command(make_app):
    app = make_app()
    with app.app_context():
        drop_tables(db.engine)

    for command in (["users", "list"], ["users", "create", "x"], ["services", "list"]):
        result = app.test_cli_runner().invoke(args=command)
        assert (result.exit_code, result.output) == (1, "Error: the database is not initialised: run signin init-db\n")
