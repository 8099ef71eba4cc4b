"""Every setting parsed and checked at start-up: a bad one stops the CLI and every server with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signin import create_app, settings
from signin.settings import SETTINGS, SettingError

SIGNIN = str(Path(sys.executable).with_name("signin"))

# For every setting, values that must be refused.
BAD = {
    "DATABASE_URL": ["nonsense", "mysql+nosuchdriver://x/y", "postgresql+nosuchdriver://x/y"],
    "REDIS_URL": ["http://127.0.0.1:6379", "127.0.0.1:6379"],
    "SIGNIN_REDIS_PREFIX": [""],
    "SIGNIN_STORE_TIMEOUT": ["abc", "0", "-1"],
    "SIGNIN_REDIS_MIN_REPLICAS": ["-1", "one", "1.5"],
    "SIGNIN_REDIS_REPLICA_TIMEOUT_MS": ["0", "-5", "x"],
    "SIGNIN_ACCESS_TOKEN_TTL": ["abc", "-5", "0", "1.5", ""],
    "SIGNIN_REFRESH_TOKEN_TTL": ["abc", "-5", "0"],
    "SIGNIN_REFRESH_REUSE_GRACE": ["-1", "ten"],
    "SIGNIN_SESSION_MAX_AGE": ["-1", "90d"],
    "SIGNIN_MAX_SESSIONS_PER_USER": ["0", "-1", "many"],
    "SIGNIN_SESSION_TOUCH_SECONDS": ["0", "x"],
    "SIGNIN_TOTP_ISSUER": [""],
    "SIGNIN_TOTP_KEY": ["short", "not-a-key not-a-key-either"],
    "SIGNIN_CLIENTS": ["", " , "],
    "SIGNIN_SCOPES": [""],
    "SIGNIN_DEFAULT_SCOPE": ["", "admin", "read admin"],
    "SIGNIN_PASSWORD_METHOD": ["bcrypt", "scrypt:1000:8:1", "pbkdf2:md9", "pbkdf2:sha256:x", "argon2id:1", ""],
    "SIGNIN_PASSWORD_MIN_LENGTH": ["0", "1025", "eight"],
    "SIGNIN_HASH_CONCURRENCY": ["0", "x"],
    "SIGNIN_HASH_WAIT_SECONDS": ["-1", "soon"],
    "SIGNIN_MAX_BODY_BYTES": ["0", "16k"],
    "SIGNIN_TRUSTED_PROXIES": ["-1", "yes"],
    "RATELIMIT_ENABLED": ["off-ish", "2", "", "enabled"],
    "SIGNIN_LIMIT_SIGNIN_PER_ADDRESS": ["banana", "30 per fortnight", ""],
    "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS": ["five"],
    "SIGNIN_LIMIT_FAILURES_PER_USERNAME": ["20 every hour"],
    "SIGNIN_REMEMBER_ADDRESS_DAYS": ["0", "month"],
    "SIGNIN_LIMIT_REFRESH_PER_ADDRESS": ["lots"],
    "SIGNIN_LIMIT_SERVICE_CALLS": ["per minute"],
    "SIGNIN_SERVICE_CACHE_SECONDS": ["-1", "5s"],
}
CASES = [(variable, value) for variable, values in BAD.items() for value in values]


def test_the_table_covers_every_setting():
    assert set(BAD) == {setting.variable for setting in SETTINGS}


@pytest.mark.parametrize(("variable", "value"), CASES)
def test_a_bad_value_is_refused_naming_the_variable_the_value_and_what_is_expected(variable, value):
    setting = next(s for s in SETTINGS if s.variable == variable)

    with pytest.raises(SettingError) as refused:
        settings.load({variable: value})

    message = str(refused.value)
    assert message.startswith(f"{variable}={value!r} is not valid: expected ")
    assert "\n" not in message
    if variable != "SIGNIN_DEFAULT_SCOPE":
        assert message.endswith(setting.kind.expected)


@pytest.mark.parametrize(
    ("text", "value"),
    [(text, True) for text in ("true", "1", "yes", "on", "TRUE", " On ")]
    + [(text, False) for text in ("false", "0", "no", "off", "OFF")],
)
def test_booleans_take_true_false_1_0_yes_no_on_off(text, value):
    assert settings.load({"RATELIMIT_ENABLED": text})["RATELIMIT_ENABLED"] is value


def test_good_values_are_parsed_to_their_types():
    loaded = settings.load(
        {
            "SIGNIN_ACCESS_TOKEN_TTL": "900",
            "SIGNIN_STORE_TIMEOUT": "0.25",
            "SIGNIN_CLIENTS": "web, cli",
            "SIGNIN_SCOPES": "read write admin",
            "SIGNIN_DEFAULT_SCOPE": "read",
            "SIGNIN_MAX_BODY_BYTES": "4096",
            "SIGNIN_PASSWORD_METHOD": "pbkdf2:sha256:600000",
        }
    )

    assert loaded["SIGNIN_ACCESS_TOKEN_TTL"] == 900
    assert loaded["SIGNIN_STORE_TIMEOUT"] == 0.25
    assert loaded["SIGNIN_CLIENTS"] == ["web", "cli"]
    assert loaded["MAX_CONTENT_LENGTH"] == 4096
    assert loaded["SIGNIN_DEFAULT_SCOPE"] == "read"


def test_a_key_given_to_create_app_wins_over_the_environment_and_is_checked_too(settings, monkeypatch):
    monkeypatch.setenv("SIGNIN_ACCESS_TOKEN_TTL", "900")
    assert create_app(settings).config["SIGNIN_ACCESS_TOKEN_TTL"] == 900
    assert create_app({**settings, "SIGNIN_ACCESS_TOKEN_TTL": 60}).config["SIGNIN_ACCESS_TOKEN_TTL"] == 60

    with pytest.raises(SettingError, match=r"^SIGNIN_ACCESS_TOKEN_TTL=-5 is not valid"):
        create_app({**settings, "SIGNIN_ACCESS_TOKEN_TTL": -5})


def test_replicas_must_be_waited_for_less_than_a_request_waits():
    with pytest.raises(SettingError, match=r"^SIGNIN_REDIS_REPLICA_TIMEOUT_MS=1500 is not valid: expected less than"):
        settings.load({"SIGNIN_REDIS_MIN_REPLICAS": "1", "SIGNIN_REDIS_REPLICA_TIMEOUT_MS": "1500"})


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNIN, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SIGNIN_ACCESS_TOKEN_TTL", "abc"),
        ("SIGNIN_CLIENTS", ""),
        ("SIGNIN_DEFAULT_SCOPE", "admin"),
        ("SIGNIN_LIMIT_SIGNIN_PER_ADDRESS", "banana"),
        ("RATELIMIT_ENABLED", "offish"),
    ],
)
@pytest.mark.parametrize("command", [("users", "list"), ("serve", "--port", "1"), ("init-db",)])
def test_the_cli_and_the_server_stop_with_one_line_and_status_2(tmp_path, variable, value, command):
    with pytest.raises(SettingError) as expected:
        settings.load({variable: value})

    result = run(*command, **{variable: value, "SIGNIN_INSTANCE_PATH": str(tmp_path)})

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"Error: {expected.value}\n"


@pytest.mark.parametrize("door", ["wsgi", "signin.wsgi"])
def test_the_wsgi_entry_points_stop_with_one_line_and_status_2(tmp_path, door):
    env = {**os.environ, "SIGNIN_ACCESS_TOKEN_TTL": "-5", "SIGNIN_INSTANCE_PATH": str(tmp_path)}
    code = f"from {door} import app"

    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr == ("signin: SIGNIN_ACCESS_TOKEN_TTL='-5' is not valid: expected a whole number, at least 1\n")


def test_signin_config_prints_the_settings_with_secrets_masked(tmp_path):
    result = run(
        "config",
        DATABASE_URL="postgresql+psycopg://signin:hunter2@db.example:5432/signin",
        REDIS_URL="redis://:sesame@cache.example:6379/0",
        SIGNIN_TOTP_KEY="RUSxK-ruViiMUeOBowxDDPm10NbELmIeDUVN3pi8eyA=",
        SIGNIN_INSTANCE_PATH=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"SIGNIN_INSTANCE_PATH={tmp_path}"
    assert "DATABASE_URL=postgresql+psycopg://signin:***@db.example:5432/signin" in lines
    assert "REDIS_URL=redis://:***@cache.example:6379/0" in lines
    assert "SIGNIN_TOTP_KEY=***" in lines
    assert "SIGNIN_ACCESS_TOKEN_TTL=604800" in lines
    assert {line.split("=", 1)[0] for line in lines[1:]} == {s.variable for s in SETTINGS}
    for secret in ("hunter2", "sesame", "RUSxK"):
        assert secret not in result.stdout
