"""``signin users import`` and ``export``: JSON Lines in and out, every line checked first, streaming, resumable."""

from __future__ import annotations

import json
import os
import pty
import signal
import stat
import subprocess
import time

import bcrypt
import pytest
import sqlalchemy as sa
from passlib import hash as libpass
from werkzeug.security import generate_password_hash

from signin.rules.passwords import verify_password
from signin.store.database import db
from signin.store.models import User
from tests.conftest import PASSWORD, SIGNIN, create_tables, drop_tables
from tests.servers import FAST_METHOD, SIGNIN_COMMAND, empty_instance_env

ME = "/api/v2/account/me/"
BCRYPT = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
SSHA = libpass.ldap_salted_sha1.hash(PASSWORD)
MD5_CRYPT = libpass.md5_crypt.hash(PASSWORD)


def jsonl(*lines: object) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def users_in(app) -> dict[str, tuple[str, bool]]:
    with app.app_context():
        return {user.username: (user.password_hash, user.is_active) for user in db.session.scalars(db.select(User))}


def imported(runner, text: str, *options: str):
    return runner.invoke(args=["users", "import", *options, "-"], input=text)


def said(result) -> str:
    """Return what a command said, on either stream, without the audit lines it wrote."""
    return "".join(line for line in result.output.splitlines(keepends=True) if not line.startswith('{"time":'))


def test_good_lines_import_every_user_as_given(app, runner, client):
    text = jsonl(
        {"username": "ann", "password_hash": BCRYPT},
        {"username": "ben", "password_hash": SSHA, "active": False, "created_at": "2020-01-02T03:04:05+02:00"},
        {"username": "Cat", "password": "a password of old", "ignored": "extra fields are"},
        {"username": "dan", "password_hash": MD5_CRYPT, "active": True},
    )

    result = imported(runner, text)

    assert (result.exit_code, said(result)) == (0, "Done: 4 imported, 0 updated, 0 skipped, 0 refused (of 4 lines).\n")
    stored = users_in(app)
    assert stored["ann"] == (BCRYPT, True)
    assert stored["ben"] == (SSHA, False)
    assert stored["Cat"][0].startswith(FAST_METHOD + "$") and verify_password(stored["Cat"][0], "a password of old")
    with app.app_context():
        ben = User.find("BEN")
        assert (ben.created_at.isoformat(), ben.last_sign_in_at, ben.password_changed_at) == (
            "2020-01-02T01:04:05",
            None,
            None,
        )
    for username, password in (("ann", PASSWORD), ("cat", "a password of old"), ("dan", PASSWORD)):
        assert client.post(SIGNIN, json={"username": username, "password": password}).status_code == 200
    assert client.post(SIGNIN, json={"username": "ben", "password": PASSWORD}).status_code == 401  # disabled


BAD = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (b"\xff\xfe".decode("latin-1"), "not valid JSON"),
    ({"password": PASSWORD}, "no username (a string)"),
    ({"username": 7, "password": PASSWORD}, "no username (a string)"),
    ({"username": "", "password": PASSWORD}, "the username is not 1 to 150 characters long, and 600 once normalised"),
    ({"username": "x" * 151, "password": PASSWORD}, "the username is not 1 to 150 characters long, and 600 once normalised"),
    ({"username": "nul\x00", "password": PASSWORD}, "the username is not valid text (it holds NUL, or is not Unicode)"),
    ({"username": "eve"}, "a line has either password_hash or password, and not both"),
    ({"username": "eve", "password": PASSWORD, "password_hash": BCRYPT}, "a line has either password_hash or password, and not both"),
    ({"username": "eve", "password": ""}, "the password is not text of 1 to 1024 characters"),
    ({"username": "eve", "password": "p" * 1025}, "the password is not text of 1 to 1024 characters"),
    ({"username": "eve", "password_hash": None}, "the password_hash is not a string"),
    ({"username": "eve", "password_hash": "hunter2-in-clear"}, "the password_hash is of no format signin reads (see docs/importing.md)"),
    ({"username": "eve", "password_hash": BCRYPT[:-3]}, "the password_hash is a malformed bcrypt hash"),
    (
        {"username": "eve", "password_hash": "$2b$12$" + BCRYPT[7:]},  # 4,096 times cost 4; the suite's method is cheap
        "the password_hash is a bcrypt hash whose parameters cost more than 10 checks of the configured method",
    ),
    ({"username": "eve", "password_hash": SSHA, "active": "yes"}, "active is not true or false"),
    ({"username": "eve", "password_hash": SSHA, "created_at": "2020-01-02"}, "created_at is not an RFC 3339 time with its offset (2024-05-01T12:00:00Z)"),
    ({"username": "eve", "password_hash": SSHA, "created_at": "2020-01-02T03:04:05"}, "created_at is not an RFC 3339 time with its offset (2024-05-01T12:00:00Z)"),
]


@pytest.mark.parametrize(("line", "reason"), BAD)
def test_a_bad_line_is_told_by_number_and_reason_and_nothing_is_written(app, runner, line, reason):
    text = jsonl({"username": "ann", "password_hash": BCRYPT}, line)

    result = imported(runner, text)

    assert result.exit_code == 1
    assert said(result) == (
        f"line 2: {reason}\nNothing imported: 1 bad line(s) (--skip-bad imports the rest).\n"
    )
    assert users_in(app) == {}
    for secret in (PASSWORD, BCRYPT, BCRYPT[7:], SSHA, "hunter2"):
        assert secret not in said(result)


def test_skip_bad_imports_the_good_lines(app, runner):
    result = imported(runner, jsonl({"username": "ann", "password_hash": BCRYPT}, "{", {"username": "ben", "password_hash": SSHA}), "--skip-bad")

    assert (result.exit_code, said(result)) == (
        0,
        "line 2: not valid JSON\nDone: 2 imported, 0 updated, 0 skipped, 1 refused (of 3 lines).\n",
    )
    assert set(users_in(app)) == {"ann", "ben"}


def test_check_checks_every_line_and_writes_nothing(app, runner, alice):
    text = jsonl({"username": "ann", "password": "never hashed"}, {"username": "ALICE", "password_hash": SSHA})

    result = imported(runner, text, "--check", "--on-conflict", "update")

    assert (result.exit_code, said(result)) == (
        0,
        "Checked, nothing written: 1 to import, 1 to update, 0 skipped, 0 refused (of 2 lines).\n",
    )
    assert set(users_in(app)) == {"alice"}


def test_names_that_match_after_normalisation_are_bad_lines_after_the_first(app, runner):
    text = jsonl(
        {"username": "Dora", "password_hash": SSHA},
        "",  # blank lines are skipped, and counted
        {"username": "DORA", "password_hash": BCRYPT},
        {"username": "\uff24\uff4f\uff52\uff41", "password_hash": BCRYPT},  # fullwidth: NFKC makes it "Dora"
    )

    result = imported(runner, text, "--skip-bad")

    assert said(result) == (
        "line 3: the same username as line 1\nline 4: the same username as line 1\n"
        "Done: 1 imported, 0 updated, 0 skipped, 2 refused (of 3 lines).\n"
    )
    assert users_in(app) == {"Dora": (SSHA, True)}


def test_an_existing_name_is_a_bad_line_by_default(app, runner, alice):
    result = imported(runner, jsonl({"username": "Alice", "password_hash": SSHA}))

    assert (result.exit_code, said(result).splitlines()[0]) == (
        1,
        "line 1: a user of that name exists (--on-conflict skip or update imports the rest)",
    )
    assert users_in(app)["alice"][0] != SSHA


def test_on_conflict_skip_leaves_existing_users_as_they_are(app, runner, alice):
    before = users_in(app)["alice"]

    result = imported(runner, jsonl({"username": "alice", "password_hash": SSHA}, {"username": "ann", "password_hash": SSHA}), "--on-conflict", "skip")

    assert (result.exit_code, said(result)) == (0, "Done: 1 imported, 0 updated, 1 skipped, 0 refused (of 2 lines).\n")
    assert users_in(app)["alice"] == before


def test_on_conflict_update_is_a_password_set_that_ends_the_users_sessions(app, runner, client, accounts, alice, caplog):
    token = accounts.signin()
    caplog.set_level("INFO", logger="signin.audit")

    result = imported(runner, jsonl({"username": "ALICE", "password_hash": MD5_CRYPT, "active": False}), "--on-conflict", "update")

    assert (result.exit_code, said(result)) == (0, "Done: 0 imported, 1 updated, 0 skipped, 0 refused (of 1 lines).\n")
    assert users_in(app)["alice"] == (MD5_CRYPT, False)
    assert client.get(ME, headers=accounts.bearer(token)).status_code == 401
    with app.app_context():
        assert User.find("alice").password_changed_at is not None
    events = [json.loads(record.getMessage()) for record in caplog.records if record.name == "signin.audit"]
    events = [line for line in events if line["event"] != "signin"]
    assert [(line["event"], line.get("sessions_ended")) for line in events] == [("password_set", 1), ("users_imported", None)]
    assert events[1] | {"time": None} == {
        "time": None, "event": "users_imported", "outcome": "success", "reason": None, "username": None,
        "address": None, "client_id": None, "request_id": None, "imported": 0, "updated": 1, "skipped": 0, "refused": 0,
    }


def test_a_file_that_cannot_be_read_is_one_line(runner, tmp_path):
    result = runner.invoke(args=["users", "import", str(tmp_path / "missing.jsonl")])

    assert result.exit_code == 2
    assert "cannot read" in said(result) and "No such file or directory" in said(result)


def test_a_line_too_long_to_read_is_refused_unread(app, runner):
    text = jsonl({"username": "ann", "password_hash": SSHA, "padding": "x" * 70_000}, {"username": "ben", "password_hash": SSHA})

    result = imported(runner, text, "--skip-bad")

    assert said(result).splitlines() == ["line 1: longer than 65536 bytes", "Done: 1 imported, 0 updated, 0 skipped, 1 refused (of 2 lines)."]


def test_export_writes_what_import_reads_and_every_user_signs_in_again(app, runner, client, accounts, tmp_path):
    made = {
        "ann": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
        "ben": SSHA,
        "cat": MD5_CRYPT,
        "dan": libpass.sha512_crypt.using(rounds=1000).hash(PASSWORD),
        "eve": libpass.phpass.using(rounds=7).hash(PASSWORD),
        "fay": generate_password_hash(PASSWORD, "scrypt:512:8:1"),
    }
    imported(runner, jsonl(*({"username": name, "password_hash": stored} for name, stored in made.items())))
    accounts.create("alice")  # made here, with the configured method
    path = tmp_path / "users.jsonl"

    exported = runner.invoke(args=["users", "export", str(path)])
    again = runner.invoke(args=["users", "export", str(path)])

    assert exported.exit_code == 0, said(exported)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["username"] for line in lines] == [*made, "alice"]
    assert all(set(line) == {"username", "password_hash", "active", "created_at"} for line in lines)
    assert all(line["created_at"].endswith("Z") for line in lines)
    assert again.exit_code == 2 and "an export never overwrites" in said(again)
    with app.app_context():
        db.session.remove()
        drop_tables(db.engine)
        create_tables()
    assert users_in(app) == {}
    result = runner.invoke(args=["users", "import", str(path)])
    assert said(result) == "Done: 7 imported, 0 updated, 0 skipped, 0 refused (of 7 lines).\n"
    for name in [*made, "alice"]:
        assert client.post(SIGNIN, json={"username": name, "password": PASSWORD}).status_code == 200, name


def test_export_to_standard_output_never_holds_a_totp_secret(app, runner, client, accounts, alice):
    import pyotp

    token = accounts.signin()
    secret = client.post("/api/v2/account/totp/", json={"password": PASSWORD}, headers=accounts.bearer(token)).get_json()["secret"]
    client.post("/api/v2/account/totp/confirm/", json={"code": pyotp.TOTP(secret).now()}, headers=accounts.bearer(token))

    result = runner.invoke(args=["users", "export"])

    [line] = result.stdout.splitlines()
    assert set(json.loads(line)) == {"username", "password_hash", "active", "created_at"}
    assert result.stderr.splitlines()[-1] == "Exported 1 user(s); TOTP secrets and recovery codes are never exported."
    assert secret not in result.output


# In processes of their own, as an operator runs them: on a terminal, interrupted, and at scale.


@pytest.fixture
def cli_env(tmp_path, settings) -> dict[str, str]:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path}/cli.db"
    env = empty_instance_env(tmp_path, DATABASE_URL=url, REDIS_URL=settings["REDIS_URL"], SIGNIN_REDIS_PREFIX=settings["SIGNIN_REDIS_PREFIX"])
    subprocess.run([SIGNIN_COMMAND, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    return env


def many(path, count: int, start: int = 0) -> None:
    with path.open("w") as file:
        for i in range(start, start + count):
            file.write(json.dumps({"username": f"user{i:07d}", "password_hash": SSHA}) + "\n")


def user_count(env: dict[str, str]) -> int:
    engine = sa.create_engine(env["DATABASE_URL"], connect_args={"timeout": 30} if env["DATABASE_URL"].startswith("sqlite") else {})
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
    engine.dispose()
    return count


def test_a_progress_bar_shows_on_a_terminal(cli_env, tmp_path):
    many(tmp_path / "users.jsonl", 50)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [SIGNIN_COMMAND, "users", "import", str(tmp_path / "users.jsonl")], env=cli_env, stdout=follower, stderr=follower
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)

    assert process.wait(60) == 0
    assert b"Reading" in shown and b"100%" in shown
    assert b"Done: 50 imported, 0 updated, 0 skipped, 0 refused (of 50 lines)." in shown


def test_an_import_interrupted_and_run_again_with_on_conflict_skip_finishes_the_work(cli_env, tmp_path):
    path = tmp_path / "users.jsonl"
    many(path, 60_000)
    process = subprocess.Popen([SIGNIN_COMMAND, "users", "import", str(path)], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while user_count(cli_env) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    interrupted = user_count(cli_env)

    again = subprocess.run([SIGNIN_COMMAND, "users", "import", "--on-conflict", "skip", str(path)], env=cli_env, capture_output=True, text=True, timeout=300, check=False)

    assert 0 < interrupted < 60_000
    assert again.stdout == (
        f"Done: {60_000 - interrupted} imported, 0 updated, {interrupted} skipped, 0 refused (of 60000 lines).\n"
    )
    assert user_count(cli_env) == 60_000


def peak_memory(env: dict[str, str], path) -> int:
    """Run an import; return its peak resident memory, in KiB."""
    process = subprocess.Popen([SIGNIN_COMMAND, "users", "import", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0
    return usage.ru_maxrss


def test_memory_does_not_grow_with_the_file(cli_env, tmp_path):
    many(tmp_path / "small.jsonl", 1_000)
    many(tmp_path / "large.jsonl", 100_000, start=1_000)

    small = peak_memory(cli_env, tmp_path / "small.jsonl")
    large = peak_memory(cli_env, tmp_path / "large.jsonl")

    assert user_count(cli_env) == 101_000
    # 100 times the lines: a few batches' worth more memory (10,000 lines a batch), not 100 times the file.
    assert large - small < 16 * 1024, (small, large)
