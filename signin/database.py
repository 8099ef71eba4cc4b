"""The users' database: Flask-SQLAlchemy bound with waits bounded by SIGNIN_STORE_TIMEOUT, and a breaker.

SQLite waits for a locked file, PostgreSQL for a connection, a statement or a
lock, each at most about ``SIGNIN_STORE_TIMEOUT`` (libpq waits 2 s at least
for a connection); a request then answers 503, and ``signin.breaker`` rests
the database so that requests do not queue behind the wait.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url

from signin.breaker import Breaker, guard_engine
from signin.extensions import db

# Errors that mean the database did not answer in time, as SQLite and psycopg word them.
TIMED_OUT = ("database is locked", "timeout expired", "canceling statement due to", "lock timeout")


def engine_options(url: str, timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    """Return SQLAlchemy engine options that bound every wait for the database at ``url`` by ``timeout``."""
    dialect = make_url(url).get_backend_name()
    connect_args = dict(options.get("connect_args", {}))
    if dialect == "sqlite":
        connect_args.setdefault("timeout", timeout)
    elif dialect == "postgresql":
        milliseconds = int(timeout * 1000)
        connect_args.setdefault("connect_timeout", max(2, math.ceil(timeout)))
        connect_args.setdefault("options", f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}")
    return {"pool_timeout": timeout, **options, "connect_args": connect_args}


def _timed_out(error: BaseException) -> bool:
    return any(words in str(error) for words in TIMED_OUT)


def init_app(app: Flask) -> None:
    """Bind ``db`` to the app with bounded waits, and rest the database after one of them runs out."""
    timeout = app.config["SIGNIN_STORE_TIMEOUT"]
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url, timeout, app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    db.init_app(app)
    with app.app_context():
        guard_engine(db.engine, Breaker(timeout), _timed_out)
