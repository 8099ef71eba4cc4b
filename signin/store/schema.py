"""The users database's schema: which revision it is at, how that compares with the code's, and upgrades.

The revision is Alembic's ``alembic_version`` table, read once when a server
or a command starts and at each readiness probe, never per request. A
database with signin's tables but no ``alembic_version`` was made by a signin
before migrations: it counts as behind, and an upgrade adopts it (the
baseline makes only the tables it lacks) with every row kept.

Upgrades run on an engine of their own, without the request timeouts, in one
transaction that no other upgrade can enter (SQLite: ``BEGIN EXCLUSIVE``;
PostgreSQL: an advisory lock), so two processes upgrading at once do it once
and an interrupted upgrade leaves the schema as it was.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event

from signin.store.database import command_engine, db

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# The columns a users table made by any signin has, to tell it from another application's.
SIGNIN_USER_COLUMNS = {"id", "username", "username_key", "password_hash", "is_active", "created_at"}
# Any 64-bit number, the same in every signin: the key of the PostgreSQL advisory lock upgrades take.
UPGRADE_LOCK = 0x5349474E494E

OK, NOT_INITIALISED, BEHIND, AHEAD = "ok", "not_initialised", "schema_behind", "schema_ahead"
# Where an upgrade started, besides a revision: a database without tables, or one made before migrations.
NEW, UNVERSIONED = "new", "unversioned"
NOT_INITIALISED_MESSAGE = "the database is not initialised: run signin init-db"


class SchemaMismatch(Exception):
    """The database's schema is not the code's; the message is the one line that says which command to run."""


@functools.cache
def scripts() -> ScriptDirectory:
    """Return the revisions shipped in the package."""
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """Return the newest revision: the schema this code needs."""
    newest = scripts().get_current_head()
    assert newest is not None  # there is at least the baseline
    return newest


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def revisions(connection: Connection) -> tuple[str, ...] | None:
    """Return the revisions the database says it is at, or None if it has no ``alembic_version``."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    return tuple(MigrationContext.configure(connection).get_current_heads())


class Standing(NamedTuple):
    """Where a database stands: its state, and the revisions it records (None: no ``alembic_version``)."""

    state: str
    found: tuple[str, ...] | None = None

    def message(self) -> str:
        """Return the one line that says what to do about it."""
        if self.state == NOT_INITIALISED:
            return NOT_INITIALISED_MESSAGE
        at = ", ".join(self.found) if self.found else None
        if self.state == AHEAD:
            return (
                f"the database schema is ahead of this signin (at {at}; this signin knows up to {head()}): "
                "install the signin that upgraded it (pip install --upgrade signin)"
            )
        where = f"at {at}, needs {head()}" if at else "made before migrations"
        return f"the database schema is behind this signin ({where}): run signin db upgrade"


def standing() -> Standing:
    """Return where the app's database stands; raise on an outage.

    One query when the database is current (its revision); a few more for one
    made before migrations.
    """
    try:
        found = tuple(db.session.scalars(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")))  # noqa: S608
    except (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as error:
        db.session.rollback()
        if not _no_such_table(error):
            raise
        return Standing(BEHIND if sa.inspect(db.session.connection()).has_table("users") else NOT_INITIALISED)
    return Standing(_compared(found), found)


def _no_such_table(error: sqlalchemy.exc.DBAPIError) -> bool:
    # PostgreSQL: UndefinedTable; SQLite: "no such table".
    return "UndefinedTable" in type(error.orig).__name__ or "no such table" in str(error.orig)


def _compared(found: tuple[str, ...]) -> str:
    if not found:
        return NOT_INITIALISED
    if found == (head(),):
        return OK
    known = {script.revision for script in scripts().walk_revisions()}
    return AHEAD if any(revision not in known for revision in found) else BEHIND


def require_current() -> str:
    """Return the database's state, ``ok`` or ``not_initialised``; else raise ``SchemaMismatch``."""
    now = standing()
    if now.state in (BEHIND, AHEAD):
        raise SchemaMismatch(now.message())
    return now.state


def upgrade(url: str) -> tuple[str, str]:
    """Bring the database at ``url`` to the newest revision; return where it was and where it is now.

    Where it was: a revision, ``NEW`` (no tables) or ``UNVERSIONED`` (made
    before migrations). Raises ``SchemaMismatch`` for a database ahead of this
    code, or one whose users table another application made.
    """
    engine = upgrade_engine(url)
    try:
        with _exclusive(engine) as connection:
            before = _before(connection)
            command.upgrade(_config(connection), "head")
    finally:
        engine.dispose()
    return before, head()


def _before(connection: Connection) -> str:
    found = revisions(connection)
    if found is not None:
        if _compared(found) == AHEAD:
            raise SchemaMismatch(Standing(AHEAD, found).message())
        return ", ".join(found) or NEW
    inspector = sa.inspect(connection)
    if not inspector.has_table("users"):
        return NEW
    columns = {column["name"] for column in inspector.get_columns("users")}
    if not columns >= SIGNIN_USER_COLUMNS:
        raise SchemaMismatch("the database has a users table signin did not make: give signin a database of its own")
    return UNVERSIONED


def current(url: str) -> Standing:
    """Return where the database at ``url`` stands."""
    engine = command_engine(url)
    try:
        with engine.connect() as connection:
            found = revisions(connection)
            if found is None:
                return Standing(BEHIND if sa.inspect(connection).has_table("users") else NOT_INITIALISED)
            return Standing(_compared(found), found)
    finally:
        engine.dispose()


def upgrade_engine(url: str) -> Engine:
    """Return an engine for schema work on ``url`` (``command_engine``); on SQLite, every statement transactional."""
    engine = command_engine(url)
    if engine.dialect.name == "sqlite":
        # pysqlite begins no transaction before DDL; SQLAlchemy's recipe makes it, and makes it exclusive.
        @event.listens_for(engine, "connect")
        def connected(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def began(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")

    return engine


@contextlib.contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """Hold a transaction that no other upgrade can enter; commit it at the end of the block."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        yield connection
