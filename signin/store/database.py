"""The users' database: Flask-SQLAlchemy bound with every wait bounded by SIGNIN_STORE_TIMEOUT, and a breaker.

SQLite waits for a locked file, PostgreSQL for a connection, a statement or a
lock, each at most about ``SIGNIN_STORE_TIMEOUT`` (libpq waits 2 s at least
for a connection). A PostgreSQL that freezes (stopped, or its machine gone
quiet) keeps its connections open and acknowledged, so that neither libpq nor
TCP ever notices: there ``Watchdog`` shuts the socket of a call that outlives
the timeout, and the call fails. Either way the request answers 503, and
``signin.store.breaker`` rests the database so that requests do not queue behind it.

``db`` is the one Flask-SQLAlchemy extension, created unbound here and bound
by ``init_app``; the tables are in ``signin.store.models``. An operator's long
command (an upgrade, an import) uses an engine of its own instead
(``command_engine``), without those bounds.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from typing import Any

import sqlalchemy.exc
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool

from signin.store.breaker import Breaker, Resting

# Errors that mean the database did not answer in time, as SQLite and psycopg word them.
TIMED_OUT = ("database is locked", "timeout expired", "canceling statement due to", "lock timeout")
WATCH_INTERVAL = 0.05
# How long an operator's command waits for the database: for a connection, or for SQLite's lock.
COMMAND_WAIT_SECONDS = 60


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


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
        # The watchdog's own ping on checkout replaces SQLAlchemy's, which it could not watch.
        options = {**options, "pool_pre_ping": False}
    return {"pool_timeout": timeout, **options, "connect_args": connect_args}


class Watchdog:
    """Shut the socket of a database call that outlives its deadline, so that the call fails instead of hanging.

    Calls are watched by thread: a thread makes one database call at a time.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._watched: dict[int, tuple[float, int]] = {}  # thread -> (deadline, socket's descriptor)
        self._fired: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_connection: Any) -> None:
        """Watch the current thread's call on ``dbapi_connection`` (a no-op for one without a socket: SQLite)."""
        fileno = getattr(dbapi_connection, "fileno", None)
        if fileno is None:
            return
        with self._lock:
            self._watched[threading.get_ident()] = (time.monotonic() + self.timeout, fileno())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="signin-database-watchdog", daemon=True)
                self._thread.start()

    def disarm(self) -> bool:
        """Stop watching the current thread's call; tell whether the watchdog cut it short."""
        me = threading.get_ident()
        with self._lock:
            self._watched.pop(me, None)
            fired = me in self._fired
            self._fired.discard(me)
        return fired

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            with self._lock:
                late = [(thread, fd) for thread, (deadline, fd) in self._watched.items() if deadline <= now]
                for thread, _ in late:
                    del self._watched[thread]
                    self._fired.add(thread)
            for _, fd in late:
                _shut(fd)


def _shut(fd: int) -> None:
    # A copy of the descriptor, shut both ways: the blocked call sees the connection end; the original stays open.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as copy:
        copy.shutdown(socket.SHUT_RDWR)


def _timed_out(error: BaseException) -> bool:
    return any(words in str(error) for words in TIMED_OUT)


def _entered(breaker: Breaker) -> bool:
    """Enter ``breaker`` (see ``Breaker.enter``), or, while it rests the database, raise as SQLAlchemy would."""
    try:
        return breaker.enter()
    except Resting:
        raise sqlalchemy.exc.OperationalError("", None, Resting("the database timed out lately")) from None


def guard(engine: Engine, breaker: Breaker, watchdog: Watchdog) -> None:
    """Put the breaker and the watchdog in the path of everything ``engine`` sends the database."""

    def enter(conn: Any) -> None:
        conn.info["breaker_trying"] = _entered(breaker)
        watchdog.arm(conn.connection.dbapi_connection)

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        enter(conn)

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        watchdog.disarm()
        breaker.succeeded(conn.info.pop("breaker_trying", False))

    @event.listens_for(engine, "handle_error")
    def failed(context: sqlalchemy.engine.ExceptionContext) -> None:
        cut_short = watchdog.disarm()
        connection = context.connection
        trying = connection.info.pop("breaker_trying", False) if connection is not None else False
        if cut_short or _timed_out(context.original_exception):
            breaker.timed_out(trying)
        else:
            breaker.left(trying)

    # A commit, a rollback and the pool's reset of a returned connection wait on the database too.
    def ending(conn: Any) -> None:
        if not conn.invalidated:  # an invalidated connection has no socket left to wait on
            watchdog.arm(conn.connection.dbapi_connection)

    for name in ("commit", "rollback"):
        event.listen(engine, name, ending)
    event.listen(engine, "reset", lambda dbapi_connection, record, state: watchdog.arm(dbapi_connection))
    event.listen(engine, "checkin", lambda dbapi_connection, record: watchdog.disarm())

    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "do_connect")
        def connecting(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
            # Not even a new connection to a database that is resting: connecting waits 2 s at least.
            breaker.left(_entered(breaker))

        @event.listens_for(engine, "checkout")
        def ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            # SQLAlchemy's pessimistic-disconnect recipe, watched: a connection that
            # does not answer is replaced (the pool tries a new one), never waited on.
            breaker.left(_entered(breaker))
            watchdog.arm(dbapi_connection)
            try:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except Exception as error:
                if not watchdog.disarm():
                    raise sqlalchemy.exc.DisconnectionError() from error  # closed: the pool connects anew
                # Frozen, not closed: a new connection would wait as long, so the request fails now.
                breaker.timed_out(False)
                record.invalidate(error)
                raise sqlalchemy.exc.OperationalError("SELECT 1", None, error) from None
            watchdog.disarm()


def init_app(app: Flask) -> None:
    """Bind ``db`` to the app with bounded waits, and rest the database after one of them runs out."""
    timeout = app.config["SIGNIN_STORE_TIMEOUT"]
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url, timeout, app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    db.init_app(app)
    with app.app_context():
        guard(db.engine, Breaker(timeout), Watchdog(timeout))


def command_engine(url: str) -> Engine:
    """Return an engine for an operator's long command: no statement timeout, no breaker, a connection used once.

    A statement may take minutes (a million rows); one that waits for a lock
    (SQLite's, while the server writes) waits up to ``COMMAND_WAIT_SECONDS``.
    """
    # Errors never quote what was sent: an import's rows hold password hashes.
    options: dict[str, Any] = {"poolclass": NullPool, "hide_parameters": True}
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": COMMAND_WAIT_SECONDS}, **options)
    return create_engine(url, connect_args={"connect_timeout": 10}, **options)
