"""The audit trail: one JSON line per security event, and never a secret in any log line."""

from __future__ import annotations

import base64
import json
import logging
import sys
import unicodedata

import pytest

from signin.events import audit
from signin.store.tokens import digest, session_ref
from tests.conftest import PASSWORD, SIGNIN, Accounts

REFRESH = "/api/v2/account/refresh/"
SIGNOUT = "/api/v2/account/signout/"
REVOKE = "/api/v2/account/revoke/"


@pytest.fixture
def audit_lines(caplog):
    caplog.set_level(logging.DEBUG)

    def lines() -> list[dict]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "signin.audit"]

    return lines


def test_a_successful_signin_is_one_line(client, alice, audit_lines):
    client.post(SIGNIN, json={"username": "ALICE", "password": PASSWORD}, headers={"X-Request-ID": "req-123"})

    [line] = audit_lines()
    assert set(line) == {
        "time",
        "event",
        "outcome",
        "reason",
        "username",
        "address",
        "client_id",
        "request_id",
        "session",
    }
    assert (line["event"], line["outcome"], line["reason"]) == ("signin", "success", None)
    assert (line["username"], line["address"], line["client_id"], line["request_id"]) == (
        "alice",
        "127.0.0.1",
        "signin",
        "req-123",
    )
    assert line["time"].endswith("Z")


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [("nobody", PASSWORD, "unknown_user"), ("alice", "wrong", "bad_password"), ("mallory", PASSWORD, "disabled")],
)
def test_a_refused_signin_says_why(client, accounts, alice, audit_lines, username, password, reason):
    accounts.create("mallory", active=False)

    client.post(SIGNIN, json={"username": username, "password": password})

    [line] = audit_lines()
    assert (line["event"], line["outcome"], line["reason"], line["username"]) == ("signin", "failure", reason, username)


def test_a_made_request_id_is_the_one_logged(client, alice, audit_lines):
    response = client.post(SIGNIN, json={"username": "alice", "password": PASSWORD})

    [line] = audit_lines()
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_reuse_detection_is_its_own_event(make_app, audit_lines):
    app = make_app({"SIGNIN_REFRESH_REUSE_GRACE": 0})
    helper = Accounts(app, app.test_client())
    helper.create("bob")
    token = helper.signin("bob")
    client = app.test_client()
    client.post(REFRESH, json={"refresh_token": token["refresh_token"]})
    client.post(REFRESH, json={"refresh_token": token["refresh_token"]})

    events = [(line["event"], line["outcome"], line["reason"]) for line in audit_lines()]
    assert events == [
        ("signin", "success", None),
        ("refresh", "success", None),
        ("refresh_reuse", "session_revoked", "reuse_detected"),
    ]


def test_throttling_is_logged(make_app, audit_lines):
    app = make_app({"RATELIMIT_ENABLED": True, "SIGNIN_LIMIT_SIGNIN_PER_ADDRESS": "1 per minute"})
    client = app.test_client()
    client.post(SIGNIN, json={"username": "zed", "password": "x"})
    client.post(SIGNIN, json={"username": "zed", "password": "x"})

    last = audit_lines()[-1]
    assert (last["event"], last["outcome"], last["reason"]) == ("throttled", "refused", "signin_per_address")


def test_no_secret_reaches_any_log_line(app, client, accounts, alice, caplog):
    caplog.set_level(logging.DEBUG)
    secret = app.test_cli_runner().invoke(args=["services", "add", "billing"]).output.strip().splitlines()[-1]
    service = {"Authorization": "Basic " + base64.b64encode(f"billing:{secret}".encode()).decode()}
    first = accounts.signin()
    client.post(SIGNIN, json={"username": "alice", "password": "a wrong " + PASSWORD})
    second = client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).get_json()["token"]
    client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    client.post("/api/v2/account/introspect/", headers=service, json={"token": second["access_token"]})
    client.post(SIGNOUT, headers=accounts.bearer(second))
    third = accounts.signin()
    client.post(REVOKE, headers=service, json={"token": third["refresh_token"]})

    text = "\n".join(record.getMessage() for record in caplog.records)
    events = [json.loads(r.getMessage())["event"] for r in caplog.records if r.name == "signin.audit"]
    assert events == ["service_added", "signin", "signin", "refresh", "refresh", "signout", "signin", "revoke"]
    secrets = [PASSWORD, secret]
    for token in (first, second, third):
        for value in (token["access_token"], token["refresh_token"]):
            selector, verifier = value.split(".")
            secrets += [value, session_ref(selector), digest(selector), digest(verifier)]
    for value in secrets:
        assert value not in text


def test_every_change_an_operator_makes_is_one_line(runner, accounts, audit_lines):
    accounts.create("bob")
    accounts.signin("bob")
    commands = [
        ["users", "create", "carol", "--password-stdin"],
        ["users", "set-password", "bob", "--password-stdin"],
        ["users", "disable", "carol"],
        ["users", "enable", "carol"],
        ["users", "revoke", "carol"],
        ["services", "add", "billing"],
        ["services", "remove", "billing"],
    ]
    for command in commands:
        assert runner.invoke(args=command, input="a new secret\n").exit_code == 0

    written = audit_lines()[1:]  # after bob's sign-in
    lines = [{key: line[key] for key in ("event", "outcome", "username", "address")} for line in written]
    assert lines == [
        {"event": "user_created", "outcome": "success", "username": "carol", "address": None},
        {"event": "password_set", "outcome": "success", "username": "bob", "address": None},
        {"event": "user_disabled", "outcome": "success", "username": "carol", "address": None},
        {"event": "user_enabled", "outcome": "success", "username": "carol", "address": None},
        {"event": "user_revoked", "outcome": "success", "username": "carol", "address": None},
        {"event": "service_added", "outcome": "success", "username": None, "address": None},
        {"event": "service_removed", "outcome": "success", "username": None, "address": None},
    ]
    assert [line.get("sessions_ended") for line in written][1:5] == [1, 0, None, 0]
    assert [line.get("service") for line in written][5:] == ["billing", "billing"]


def unsafe_characters() -> list[str]:
    """Every character a JSON encoder leaves raw that a line reader, terminal or editor would act on."""
    return [
        chr(code)
        for code in range(0x7F, sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Cf", "Zl", "Zp")
    ]


def test_every_control_separator_and_format_character_is_escaped():
    characters = unsafe_characters()
    assert {"\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\u2066", "\u200f", "\ufeff"} <= set(characters)

    line = audit.line({"username": "a" + "".join(characters) + "z"})

    assert line.isascii() or all(c not in line for c in characters)
    assert len(line.splitlines()) == 1
    assert json.loads(line) == {"username": "a" + "".join(characters) + "z"}


@pytest.mark.parametrize("character", ["\x85", "\u2028", "\u2029", "\x1b", "\x7f", "\u202e", "\u2067", "\x9b"])
def test_a_username_cannot_forge_or_hide_audit_lines(client, alice, audit_lines, caplog, character):
    username = f'mallory{character}{{"event":"signin","outcome":"success"}}'

    client.post(SIGNIN, json={"username": username, "password": "x"})

    [message] = [r.getMessage() for r in caplog.records if r.name == "signin.audit"]
    assert character not in message
    assert len(message.splitlines()) == 1
    assert json.loads(message)["username"] == username
