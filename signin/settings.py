"""Every setting: its environment variable, default and meaning, parsed and checked in this one place.

``create_app`` calls ``load`` once: a key passed to ``create_app(config=...)``
wins over the environment, which wins over the default. A value that cannot
be used raises ``SettingError``, whose message is the one line to print:
the variable, the value and what was expected. The rest of the package reads
``app.config`` and never repeats a default.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MASK = "***"

# Flask settings signin always runs with; not for operators to change.
FIXED = {
    # No empty text/html answers to OPTIONS: it gets the JSON 405 like any
    # method a route does not serve (there is no CORS here to pre-flight).
    "PROVIDE_AUTOMATIC_OPTIONS": False,
    # pool_pre_ping: a connection broken by a database restart is replaced,
    # not handed to a request. hide_parameters: no bound value (a password
    # hash, a service digest) ever appears in an error message or log line.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True},
}


class SettingError(ValueError):
    """A setting whose value cannot be used; the message names it, its value and what it expects."""


@dataclass(frozen=True)
class Kind:
    """How a setting's text becomes a value, and what the value must be."""

    expected: str
    parse: Callable[[str], Any]
    check: Callable[[Any], bool] = lambda _: True
    # What a value passed to create_app may already be (else it must be text to parse).
    types: tuple[type, ...] = ()


def _integer(minimum: int) -> Kind:
    return Kind(f"a whole number, at least {minimum}", int, lambda value: value >= minimum, (int,))


def _seconds(minimum: float) -> Kind:
    return Kind(f"a number of seconds above {minimum:g}", float, lambda value: value > minimum, (int, float))


def _boolean(text: str) -> bool:
    if text.strip().lower() in TRUE:
        return True
    if text.strip().lower() in FALSE:
        return False
    raise ValueError(text)


def _words(text: str) -> list[str]:
    return text.replace(",", " ").split()


def _rate_limits(text: str) -> str:
    from limits import parse_many

    parse_many(text)
    return text


def _password_method(text: str) -> str:
    """Accept what ``signin.rules.passwords.hash_password`` can hash with, as werkzeug and argon2-cffi parse it."""
    name, *parameters = text.split(":")
    if name == "pbkdf2" and parameters and parameters[0] not in hashlib.algorithms_guaranteed:
        raise ValueError(text)
    numbers = [int(parameter) for parameter in (parameters[1:] if name == "pbkdf2" else parameters)]
    if any(number < 1 for number in numbers):
        raise ValueError(text)
    if name == "scrypt" and len(numbers) in (0, 3) and (not numbers or _power_of_two(numbers[0])):
        return text
    if (name == "pbkdf2" and len(numbers) <= 1) or (name == "argon2id" and len(numbers) in (0, 3)):
        return text
    raise ValueError(text)


def _power_of_two(number: int) -> bool:
    return number > 1 and number & (number - 1) == 0


def _fernet_keys(keys: list[str]) -> bool:
    from cryptography.fernet import Fernet

    try:
        for key in keys:
            Fernet(key)  # 32 bytes in URL-safe base64, or ValueError
    except (ValueError, TypeError):
        return False
    return True


def _database_url(text: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(text).get_dialect()  # an unknown dialect or a driver that is not installed raises
    except (ArgumentError, NoSuchModuleError):
        raise ValueError(text) from None
    return text


def _redis_url(text: str) -> str:
    if urlsplit(text).scheme not in REDIS_SCHEMES:
        raise ValueError(text)
    return text


INTEGER, POSITIVE = _integer(0), _integer(1)
FERNET_KEYS = Kind(
    "Fernet keys (each 32 bytes in URL-safe base64, as Fernet.generate_key() makes), separated by spaces; "
    "the first encrypts",
    _words,
    _fernet_keys,
    (list, tuple),
)
TEXT = Kind("some text", str, bool, (str,))
WORDS = Kind("one or more words, separated by spaces or commas", _words, bool, (list, tuple))
BOOLEAN = Kind("one of true/false, 1/0, yes/no, on/off", _boolean, types=(bool,))
RATE_LIMITS = Kind("a rate limit such as '30 per minute' (several: separated by ';')", _rate_limits)
PASSWORD_METHOD = Kind(
    "a werkzeug method such as scrypt:32768:8:3 or pbkdf2:sha256:600000, or argon2id[:m:t:p]", _password_method
)
DATABASE_URL = Kind("a SQLAlchemy URL such as sqlite:///path or postgresql+psycopg://user@host/db", _database_url)
REDIS_URL = Kind(f"a URL whose scheme is one of {', '.join(REDIS_SCHEMES)}", _redis_url)


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read from, its default, what it must be, and what it does."""

    key: str
    default: Any
    kind: Kind
    doc: str
    env: str = ""
    # Printed masked by ``signin config``.
    secret: bool = False

    @property
    def variable(self) -> str:
        return self.env or self.key


SETTINGS = (
    Setting(
        "SQLALCHEMY_DATABASE_URI",
        None,
        DATABASE_URL,
        "users and services; unset: SQLite at <instance>/signin.db",
        env="DATABASE_URL",
    ),
    Setting(
        "REDIS_URL",
        None,
        REDIS_URL,
        "tokens and throttling; unset: an embedded redis-server under the instance folder",
    ),
    Setting("SIGNIN_REDIS_PREFIX", "signin:", TEXT, "prefix of every Redis key the service writes"),
    Setting(
        "SIGNIN_STORE_TIMEOUT",
        1.0,
        _seconds(0),
        "how long a request waits for Redis or the database before it answers 503",
    ),
    Setting(
        "SIGNIN_REDIS_MIN_REPLICAS",
        0,
        INTEGER,
        "hand out a new or refreshed pair only once this many replicas hold it (WAIT); 0: don't wait",
    ),
    Setting("SIGNIN_REDIS_REPLICA_TIMEOUT_MS", 500, POSITIVE, "how long to wait for those replicas, milliseconds"),
    Setting("SIGNIN_ACCESS_TOKEN_TTL", 604800, POSITIVE, "access token lifetime, seconds (expires_in)"),
    Setting("SIGNIN_REFRESH_TOKEN_TTL", 604800, POSITIVE, "refresh token lifetime, seconds"),
    Setting(
        "SIGNIN_REFRESH_REUSE_GRACE",
        10,
        INTEGER,
        "seconds in which a spent refresh token presented again is only refused; after it the session is revoked",
    ),
    Setting(
        "SIGNIN_SESSION_MAX_AGE",
        7776000,
        INTEGER,
        "seconds a session lives from its sign-in, however often refreshed; 0: no limit",
    ),
    Setting(
        "SIGNIN_MAX_SESSIONS_PER_USER",
        100,
        POSITIVE,
        "live sessions a user may have; a sign-in beyond it ends their oldest",
    ),
    Setting(
        "SIGNIN_SESSION_TOUCH_SECONDS",
        300,
        POSITIVE,
        "a session's last use is written at most this often (a token check stays one GET)",
    ),
    Setting("SIGNIN_TOTP_ISSUER", "signin", TEXT, "the issuer authenticator apps show beside a user's TOTP codes"),
    Setting(
        "SIGNIN_TOTP_KEY",
        [],
        FERNET_KEYS,
        "keys that encrypt TOTP secrets, the first for new ones; unset: <instance>/totp.key, made when first needed",
        secret=True,
    ),
    Setting("SIGNIN_CLIENTS", ["signin"], WORDS, "the client ids a sign-in may name; the first is the default"),
    Setting("SIGNIN_SCOPES", ["read", "write"], WORDS, "the scopes a sign-in may ask for"),
    Setting("SIGNIN_DEFAULT_SCOPE", "read write", TEXT, "the scope a sign-in gets when it asks for none"),
    Setting(
        "SIGNIN_PASSWORD_METHOD",
        "scrypt:32768:8:3",
        PASSWORD_METHOD,
        "method for new and re-hashed passwords (default: OWASP's scrypt N=2^15 r=8 p=3)",
    ),
    Setting(
        "SIGNIN_PASSWORD_MIN_LENGTH",
        8,
        Kind("a whole number from 1 to 1024", int, lambda value: 1 <= value <= 1024, (int,)),
        "the fewest characters a new password may have (the policy; passwords set earlier still sign in)",
    ),
    Setting(
        "SIGNIN_HASH_CONCURRENCY",
        max(1, CORES - 1),
        POSITIVE,
        "password checks run at once in a process (default: one per core but one, so token checks keep a core); "
        "as many more may wait",
    ),
    Setting(
        "SIGNIN_HASH_WAIT_SECONDS",
        1.0,
        _seconds(0),
        "how long a password check waits for its turn before the request answers 503",
    ),
    Setting("MAX_CONTENT_LENGTH", 16384, POSITIVE, "larger request bodies get 413", env="SIGNIN_MAX_BODY_BYTES"),
    Setting(
        "SIGNIN_TRUSTED_PROXIES",
        0,
        INTEGER,
        "how many X-Forwarded-For hops to trust (werkzeug's ProxyFix); 0 ignores the header",
    ),
    Setting("RATELIMIT_ENABLED", True, BOOLEAN, "false switches all throttling off"),
    Setting("SIGNIN_LIMIT_SIGNIN_PER_ADDRESS", "30 per minute", RATE_LIMITS, "every sign-in attempt, per address"),
    Setting(
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS",
        "5 per 15 minutes",
        RATE_LIMITS,
        "failed sign-ins per (username, address)",
    ),
    Setting(
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME",
        "20 per hour",
        RATE_LIMITS,
        "failed sign-ins per username from any address the user has not signed in from lately",
    ),
    Setting(
        "SIGNIN_REMEMBER_ADDRESS_DAYS",
        30,
        POSITIVE,
        "how long an address a user signed in from stays exempt from the per-username limit",
    ),
    Setting("SIGNIN_LIMIT_REFRESH_PER_ADDRESS", "60 per minute", RATE_LIMITS, "refreshes per address"),
    Setting(
        "SIGNIN_LIMIT_SERVICE_CALLS", "6000 per minute", RATE_LIMITS, "introspection and revocation calls per service"
    ),
    Setting(
        "SIGNIN_SERVICE_CACHE_SECONDS",
        5,
        INTEGER,
        "how long a process trusts a service credential it verified; a removed service stops working within it",
    ),
)
BY_KEY = {setting.key: setting for setting in SETTINGS}
DEFAULTS: Mapping[str, Any] = {setting.key: setting.default for setting in SETTINGS}


def _value(setting: Setting, raw: Any) -> Any:
    if isinstance(raw, str) and str not in setting.kind.types:
        try:
            value = setting.kind.parse(raw)
        except (ValueError, TypeError):
            value = None
    elif isinstance(raw, setting.kind.types) and not (isinstance(raw, bool) and bool not in setting.kind.types):
        value = raw
    else:
        value = None
    if value is None or not setting.kind.check(value):
        raise SettingError(f"{setting.variable}={raw!r} is not valid: expected {setting.kind.expected}")
    return value


def load(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return every setting, from ``overrides``, else ``environ``, else its default; raise ``SettingError``."""
    overrides = overrides or {}
    values: dict[str, Any] = dict(FIXED)
    for setting in SETTINGS:
        if setting.key in overrides:
            raw = overrides[setting.key]
        elif setting.variable in environ:
            raw = environ[setting.variable]
        else:
            values[setting.key] = setting.default
            continue
        values[setting.key] = None if raw is None and setting.default is None else _value(setting, raw)
    values.update({key: value for key, value in overrides.items() if key not in BY_KEY})
    _check_together(values)
    return values


def _check_together(values: Mapping[str, Any]) -> None:
    """Check what no one setting can say alone."""
    replica_wait, budget = values["SIGNIN_REDIS_REPLICA_TIMEOUT_MS"], 1000 * values["SIGNIN_STORE_TIMEOUT"]
    if values["SIGNIN_REDIS_MIN_REPLICAS"] and replica_wait >= budget:
        raise SettingError(
            f"SIGNIN_REDIS_REPLICA_TIMEOUT_MS={values['SIGNIN_REDIS_REPLICA_TIMEOUT_MS']!r} is not valid: "
            f"expected less than SIGNIN_STORE_TIMEOUT ({values['SIGNIN_STORE_TIMEOUT']:g} s), which bounds the wait"
        )
    default, allowed = values["SIGNIN_DEFAULT_SCOPE"].split(), values["SIGNIN_SCOPES"]
    if not set(default) <= set(allowed):
        raise SettingError(
            f"SIGNIN_DEFAULT_SCOPE={values['SIGNIN_DEFAULT_SCOPE']!r} is not valid: "
            f"expected scopes among SIGNIN_SCOPES ({' '.join(allowed)})"
        )


def instance_path(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> str | None:
    """Return the instance folder set by ``SIGNIN_INSTANCE_PATH``, made absolute, or None for Flask's own."""
    path = (overrides or {}).get("SIGNIN_INSTANCE_PATH") or environ.get("SIGNIN_INSTANCE_PATH")
    return os.path.abspath(path) if path else None


def shown(setting: Setting, value: Any) -> str:
    """Return a setting's value as ``signin config`` prints it: secrets and passwords in URLs masked."""
    if value is None:
        return "(unset)"
    if setting.secret:
        return MASK
    if isinstance(value, list):
        return " ".join(value)
    if setting.kind in (DATABASE_URL, REDIS_URL):
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    return str(value)
