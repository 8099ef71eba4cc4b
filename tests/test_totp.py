"""A second factor: TOTP enrolment, confirmation, sign-in with ``otp``, recovery codes, disabling, the key."""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyotp
import pytest
from cryptography.fernet import Fernet

from signin import serving
from signin.rules import one_time_codes as totp
from signin.store.database import db
from signin.store.models import RecoveryCode, TotpFactor
from tests.conftest import PASSWORD, SIGNIN, Accounts, stored_text

TOTP = "/api/v2/account/totp/"
CONFIRM = "/api/v2/account/totp/confirm/"
DISABLE = "/api/v2/account/totp/disable/"
ME = "/api/v2/account/me/"
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The credentials or refresh token are invalid, expired or revoked.",
}
MFA_REQUIRED = {"error": "mfa_required", "error_description": "This account needs a one-time code: send it as otp."}


@pytest.fixture
def clock(monkeypatch):
    """The time codes are checked at, moved by hand: no waiting for 30 s steps."""
    now = [float(int(time.time()) // 30 * 30 + 10)]
    monkeypatch.setattr(totp, "now", lambda: now[0])
    return now


def bearer(token):
    return {"Authorization": f"Bearer {token['access_token']}"}


def code_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(when)


def enrolled(client, accounts, clock) -> tuple[dict, str, list[str]]:
    """Sign alice in, turn TOTP on; return the bearer's token, the secret and the recovery codes."""
    token = accounts.signin()
    secret = client.post(TOTP, json={"password": PASSWORD}, headers=bearer(token)).get_json()["secret"]
    confirmed = client.post(CONFIRM, json={"code": code_at(secret, clock[0])}, headers=bearer(token))
    assert confirmed.status_code == 200, confirmed.get_json()
    clock[0] += 30  # the code just used is spent
    return token, secret, confirmed.get_json()["recovery_codes"]


def sign_in(client, otp=None, password=PASSWORD):
    body = {"username": "alice", "password": password} | ({"otp": otp} if otp is not None else {})
    return client.post(SIGNIN, json=body)


def test_enrolment_gives_a_pending_secret_and_an_otpauth_uri(client, accounts, alice):
    token = accounts.signin()

    response = client.post(TOTP, json={"password": PASSWORD}, headers=bearer(token))

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"secret", "otpauth_uri"}
    assert len(body["secret"]) == 32 and pyotp.TOTP(body["secret"]).now().isdigit()
    assert body["otpauth_uri"] == f"otpauth://totp/signin:alice?secret={body['secret']}&issuer=signin"
    assert sign_in(client).status_code == 200  # pending: sign-in is unchanged


def test_the_issuer_is_a_setting(make_app):
    app = make_app({"SIGNIN_TOTP_ISSUER": "Acme Corp"})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")

    body = app.test_client().post(TOTP, json={"password": PASSWORD}, headers=bearer(accounts.signin())).get_json()

    assert body["otpauth_uri"].startswith("otpauth://totp/Acme%20Corp:alice?secret=")
    assert body["otpauth_uri"].endswith("&issuer=Acme%20Corp")


def test_enrolment_with_a_wrong_password_is_400_invalid_grant(client, accounts, alice, app):
    response = client.post(TOTP, json={"password": "wrong"}, headers=bearer(accounts.signin()))

    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_grant", "error_description": "The current password is wrong."}
    with app.app_context():
        assert db.session.get(TotpFactor, 1) is None


def test_asking_again_replaces_the_pending_secret(client, accounts, alice, clock):
    token = accounts.signin()
    first = client.post(TOTP, json={"password": PASSWORD}, headers=bearer(token)).get_json()["secret"]
    second = client.post(TOTP, json={"password": PASSWORD}, headers=bearer(token)).get_json()["secret"]

    stale = client.post(CONFIRM, json={"code": code_at(first, clock[0])}, headers=bearer(token))
    fresh = client.post(CONFIRM, json={"code": code_at(second, clock[0])}, headers=bearer(token))

    assert first != second
    assert (stale.status_code, fresh.status_code) == (400, 200)


def test_confirming_turns_it_on_gives_ten_recovery_codes_and_ends_other_sessions(client, accounts, alice, clock):
    other = accounts.signin()

    token, _, codes = enrolled(client, accounts, clock)

    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(code) == 19 and code.count("-") == 3 for code in codes)
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert client.get(ME, headers=bearer(other)).status_code == 401
    assert sign_in(client).get_json() == MFA_REQUIRED


def test_enrolling_again_once_on_is_409(client, accounts, alice, clock):
    token, _, _ = enrolled(client, accounts, clock)

    response = client.post(TOTP, json={"password": PASSWORD}, headers=bearer(token))

    assert response.status_code == 409
    assert response.get_json() == {
        "error": "totp_already_enabled",
        "error_description": "This account has TOTP already: turn it off first to enrol again.",
    }


@pytest.mark.parametrize("pending", [True, False])
def test_a_wrong_code_or_nothing_pending_is_400_invalid_grant(client, accounts, alice, clock, pending):
    token = accounts.signin()
    if pending:
        client.post(TOTP, json={"password": PASSWORD}, headers=bearer(token))

    response = client.post(CONFIRM, json={"code": "000000"}, headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_grant",
        "error_description": "The one-time code is wrong, or nothing is pending.",
    }


def test_a_malformed_code_is_400_invalid_request(client, accounts, alice):
    response = client.post(CONFIRM, json={"code": "12345"}, headers=bearer(accounts.signin()))

    assert response.status_code == 400
    assert response.get_json()["fields"] == {"code": ["A code is 6 digits."]}


def test_sign_in_with_a_current_code_is_the_seeds_200(client, accounts, alice, clock):
    _, secret, _ = enrolled(client, accounts, clock)

    response = sign_in(client, code_at(secret, clock[0]))

    assert response.status_code == 200
    token = response.get_json()["token"]
    assert set(token) == {"access_token", "expires_in", "token_type", "refresh_token", "client_id", "scope"}
    assert (token["expires_in"], token["token_type"]) == ("604800", "Bearer")


@pytest.mark.parametrize(("offset", "accepted"), [(-60, False), (-30, True), (0, True), (30, True), (60, False)])
def test_one_step_of_drift_either_way(client, accounts, alice, clock, offset, accepted):
    _, secret, _ = enrolled(client, accounts, clock)
    clock[0] += 90  # well past the step enrolment used

    response = sign_in(client, code_at(secret, clock[0] + offset))

    assert response.status_code == (200 if accepted else 401)


@pytest.mark.parametrize(
    "case", ["no such user", "wrong password, right code", "right password, wrong code", "a spent code", "an old code"]
)
def test_anything_wrong_is_the_one_invalid_grant(client, accounts, alice, clock, case):
    _, secret, _ = enrolled(client, accounts, clock)
    current = code_at(secret, clock[0])
    if case == "a spent code":
        assert sign_in(client, current).status_code == 200
    if case == "an old code":  # a later step was used: this one, though inside the window, is not
        assert sign_in(client, code_at(secret, clock[0] + 30)).status_code == 200
    body = {
        "no such user": {"username": "nobody", "password": PASSWORD, "otp": current},
        "wrong password, right code": {"username": "alice", "password": "wrong", "otp": current},
        "right password, wrong code": {"username": "alice", "password": PASSWORD, "otp": "123456"},
        "a spent code": {"username": "alice", "password": PASSWORD, "otp": current},
        "an old code": {"username": "alice", "password": PASSWORD, "otp": current},
    }[case]

    response = client.post(SIGNIN, json=body)

    assert (response.status_code, response.get_json()) == (401, INVALID_GRANT)
    assert "WWW-Authenticate" not in response.headers


@pytest.fixture
def racing_app(make_app):
    """An app with room for eight password checks at once, so that the race is the code's alone."""
    app = make_app({"SIGNIN_HASH_CONCURRENCY": 8})
    Accounts(app, app.test_client()).create("alice")
    return app


def on_eight_threads(call):
    """Make the same call on eight threads at once; return what each returned."""
    barrier, results = threading.Barrier(8), []

    def race():
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_the_same_code_racing_on_eight_threads_signs_in_once(racing_app, clock):
    app, accounts = racing_app, Accounts(racing_app, racing_app.test_client())
    _, secret, _ = enrolled(app.test_client(), accounts, clock)
    code = code_at(secret, clock[0])

    statuses = on_eight_threads(lambda: sign_in(app.test_client(), code).status_code)

    assert sorted(statuses) == [200] + [401] * 7


def test_eight_enrolments_at_once_each_answer_and_leave_one_pending_secret(racing_app, clock):
    app, accounts = racing_app, Accounts(racing_app, racing_app.test_client())
    token = accounts.signin()

    responses = on_eight_threads(
        lambda: app.test_client().post(TOTP, json={"password": PASSWORD}, headers=bearer(token))
    )

    assert [r.status_code for r in responses] == [200] * 8
    with app.app_context():
        [factor] = db.session.scalars(db.select(TotpFactor)).all()
        assert not factor.confirmed
        assert totp.decrypt(factor.secret) in {r.get_json()["secret"] for r in responses}


def test_a_recovery_code_works_once_ever(client, accounts, alice, clock, caplog):
    _, _, codes = enrolled(client, accounts, clock)
    caplog.set_level(logging.INFO)

    first = sign_in(client, codes[0].upper().replace("-", " "))  # typed loosely
    again = sign_in(client, codes[0])
    clock[0] += 86400
    later = sign_in(client, codes[0])

    assert first.status_code == 200
    assert (again.status_code, again.get_json()) == (401, INVALID_GRANT)
    assert later.status_code == 401
    assert sign_in(client, codes[1]).status_code == 200
    events = [json.loads(r.getMessage())["event"] for r in caplog.records if r.name == "signin.audit"]
    assert events.count("recovery_code_used") == 2


def test_one_recovery_code_racing_on_eight_threads_signs_in_once(racing_app, clock):
    app, accounts = racing_app, Accounts(racing_app, racing_app.test_client())
    _, _, codes = enrolled(app.test_client(), accounts, clock)

    statuses = on_eight_threads(lambda: sign_in(app.test_client(), codes[3]).status_code)

    assert sorted(statuses) == [200] + [401] * 7


def test_a_missing_code_counts_as_a_failure_and_codes_are_throttled(make_app, clock):
    limits = {
        "RATELIMIT_ENABLED": True,
        "SIGNIN_LIMIT_SIGNIN_PER_ADDRESS": "100 per minute",
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS": "3 per minute",
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME": "100 per minute",
    }
    app = make_app(limits)
    client = app.test_client()
    accounts = Accounts(app, client)
    accounts.create("alice")
    _, secret, _ = enrolled(client, accounts, clock)

    answers = [
        sign_in(client).status_code,
        sign_in(client, "111111").status_code,
        sign_in(client, "222222").status_code,
    ]
    blocked = sign_in(client, code_at(secret, clock[0]))

    assert answers == [401, 401, 401]
    assert blocked.status_code == 429


def test_disabling_needs_the_password_and_a_code_and_says_nothing_of_which_was_wrong(client, accounts, alice, clock):
    token, secret, codes = enrolled(client, accounts, clock)
    wrong = {"error": "invalid_grant", "error_description": "The password or the one-time code is wrong."}

    bad_password = client.post(DISABLE, json={"password": "x", "code": codes[0]}, headers=bearer(token))
    bad_code = client.post(DISABLE, json={"password": PASSWORD, "code": "999999"}, headers=bearer(token))
    done = client.post(DISABLE, json={"password": PASSWORD, "code": code_at(secret, clock[0])}, headers=bearer(token))

    assert (bad_password.status_code, bad_password.get_json()) == (400, wrong)
    assert (bad_code.status_code, bad_code.get_json()) == (400, wrong)
    assert done.status_code == 204
    assert sign_in(client).status_code == 200  # a password alone again
    assert sign_in(client, codes[0]).status_code == 200  # the recovery codes are gone too: otp is ignored


def test_disabling_with_a_recovery_code(client, accounts, alice, clock):
    token, _, codes = enrolled(client, accounts, clock)

    response = client.post(DISABLE, json={"password": PASSWORD, "code": codes[5]}, headers=bearer(token))

    assert response.status_code == 204
    assert sign_in(client).status_code == 200


def test_a_mistyped_password_does_not_spend_a_recovery_code(client, accounts, alice, clock):
    token, _, codes = enrolled(client, accounts, clock)

    client.post(DISABLE, json={"password": "typo", "code": codes[2]}, headers=bearer(token))

    assert sign_in(client, codes[2]).status_code == 200


def test_secrets_are_encrypted_and_codes_kept_as_digests(app, client, accounts, alice, clock, redis, prefix, caplog):
    caplog.set_level(logging.DEBUG)
    _, secret, codes = enrolled(client, accounts, clock)
    used = code_at(secret, clock[0])
    sign_in(client, used)
    sign_in(client, codes[0])

    with app.app_context():
        stored = db.session.get(TotpFactor, 1).secret
        digests = set(db.session.scalars(db.select(RecoveryCode.digest)))
        assert totp.decrypt(stored) == secret
    assert secret not in stored
    assert digests == {totp.recovery_digest(code) for code in codes}
    in_redis = stored_text(redis, prefix)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in (secret, used, *codes, *(c.replace("-", "") for c in codes)):
        assert value not in in_redis
        assert value not in logged


def test_every_step_of_the_flow_writes_its_audit_line(runner, client, accounts, alice, clock, caplog):
    caplog.set_level(logging.INFO)
    token, secret, codes = enrolled(client, accounts, clock)
    sign_in(client)
    sign_in(client, codes[0])
    client.post(DISABLE, json={"password": PASSWORD, "code": code_at(secret, clock[0])}, headers=bearer(token))
    clock[0] += 30
    enrolled(client, accounts, clock)
    runner.invoke(args=["users", "totp-reset", "alice"])

    events = [json.loads(r.getMessage())["event"] for r in caplog.records if r.name == "signin.audit"]
    for event in ("totp_enabled", "mfa_required", "recovery_code_used", "totp_disabled", "totp_reset"):
        assert event in events


def test_users_totp_reset_removes_it_and_ends_every_session(app, runner, client, accounts, alice, clock):
    token, _, _ = enrolled(client, accounts, clock)
    assert runner.invoke(args=["users", "list"]).output == "alice\tactive\ttotp\t1 session(s)\n"

    result = runner.invoke(args=["users", "totp-reset", "alice"])

    assert result.exit_code == 0
    assert result.output == "TOTP of 'alice' removed; ended 1 session(s).\n"
    assert client.get(ME, headers=bearer(token)).status_code == 401
    assert sign_in(client).status_code == 200
    assert runner.invoke(args=["users", "list"]).output == "alice\tactive\tno-totp\t1 session(s)\n"


def test_a_service_with_totp_users_and_no_key_to_their_secrets_refuses_to_start(make_app, tmp_path, clock):
    key = Fernet.generate_key().decode()
    app = make_app({"SIGNIN_TOTP_KEY": [key]})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    enrolled(app.test_client(), accounts, clock)

    other = make_app({"SIGNIN_TOTP_KEY": [Fernet.generate_key().decode()]})
    with pytest.raises(serving.StartupError, match="no key in SIGNIN_TOTP_KEY"):
        serving.prepare(other)
    keyless = make_app({"SIGNIN_INSTANCE_PATH": str(tmp_path / "elsewhere")})
    with pytest.raises(serving.StartupError, match="users have TOTP but there is no key"):
        serving.prepare(keyless)
    serving.prepare(make_app({"SIGNIN_TOTP_KEY": [key]}))


def test_rotate_key_encrypts_again_under_the_first_key(make_app, clock):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = make_app({"SIGNIN_TOTP_KEY": [old]})
    accounts = Accounts(app, app.test_client())
    accounts.create("alice")
    _, secret, _ = enrolled(app.test_client(), accounts, clock)

    both = make_app({"SIGNIN_TOTP_KEY": [new, old]})
    result = both.test_cli_runner().invoke(args=["totp", "rotate-key"])
    only_new = make_app({"SIGNIN_TOTP_KEY": [new]})

    assert (result.exit_code, result.output) == (
        0,
        "Encrypted 1 TOTP secret(s) under the first key of SIGNIN_TOTP_KEY.\n",
    )
    assert sign_in(only_new.test_client(), code_at(secret, clock[0])).status_code == 200
    assert make_app({"SIGNIN_TOTP_KEY": [old]}).test_cli_runner().invoke(args=["totp", "rotate-key"]).exit_code == 1


def test_without_a_configured_key_the_instance_folder_gets_one_mode_0600(app, client, accounts, alice, clock):
    enrolled(client, accounts, clock)

    key_file = Path(app.instance_path, "totp.key")

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Fernet(key_file.read_bytes().strip())


def test_processes_making_the_key_file_at_once_all_read_the_one_made(settings, tmp_path):
    # Workers of a fresh deployment, each making the key file as it starts.
    instance = tmp_path / "fresh"
    script = (
        "import sys; from signin import create_app; from signin.rules import one_time_codes as totp\n"
        "app = create_app({'SIGNIN_INSTANCE_PATH': sys.argv[1], 'REDIS_URL': sys.argv[2]})\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "with app.app_context(): print(next(totp._key_texts()).decode())\n"
    )
    command = [sys.executable, "-c", script, str(instance), settings["REDIS_URL"]]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    workers = [subprocess.Popen(command, **pipes) for _ in range(8)]
    for worker in workers:
        assert worker.stdout.readline() == "ready\n"
    for worker in workers:  # all at once
        worker.stdin.write("go\n")
        worker.stdin.flush()
    keys = {worker.communicate(timeout=60)[0].strip() for worker in workers}

    assert keys == {Path(instance, "totp.key").read_text().strip()}
    assert sorted(path.name for path in instance.iterdir()) == ["totp.key"]  # nothing left aside
