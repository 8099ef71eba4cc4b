"""An import's staging table: every line checked lands here first, so that the work is done in SQL, not in memory.

A temporary table of the import's own connection (gone when it closes): one
row a line, with the problem found in it, if any. Duplicate names inside the
file and names of existing users are found by queries over it, and the good
rows move into ``users`` a batch of lines at a time, each batch committed, so
that an import interrupted and run again with ``--on-conflict skip`` finishes
the work. Nothing here holds a password in clear: only hashes.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Column, Connection, DateTime, Integer, MetaData, String, Table, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite

from signin.store.models import USERNAME_KEY_LENGTH, User

# Lines staged, read back or written into users at a time. A write holds SQLite's one write lock, which a
# sign-in's own write waits for (up to SIGNIN_STORE_TIMEOUT): 10,000 users take about 0.1 s; 2,000 a time
# took twice as long in all (a commit's fsync each).
BATCH = 10_000

_metadata = MetaData()
staging = Table(
    "signin_import_staging",
    _metadata,
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("username", String(150)),
    Column("username_key", String(USERNAME_KEY_LENGTH), index=True),
    Column("password_hash", String(512)),
    Column("active", Boolean),
    Column("created_at", DateTime),
    Column("problem", String(200)),
    # The first line with the same name, for a line that repeats one; the user of that name, if any.
    Column("duplicate_of", Integer),
    Column("user_id", Integer),
    prefixes=["TEMPORARY"],
)
users = User.__table__
GOOD = and_(staging.c.problem.is_(None), staging.c.duplicate_of.is_(None))


class Staging:
    """The staging table of one import, on its own connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        staging.create(connection)
        connection.commit()
        self.lines = 0
        # The driver's own executemany: SQLAlchemy's would build every row's parameters anew, most of an
        # import's time. Values as the driver takes them: the times as SQLAlchemy writes them (SQLite: text).
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        names = [column.name for column in staging.columns]
        columns, markers = ", ".join(names), ", ".join([marker] * len(names))
        self._insert = f"INSERT INTO {staging.name} ({columns}) VALUES ({markers})"  # noqa: S608 (our own names)
        self._values = operator.itemgetter(*names)
        self._time = staging.c.created_at.type.bind_processor(connection.dialect) or (lambda value: value)

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Stage checked lines: a value for every column, ``problem`` None or why the line is bad."""
        if not rows:
            return
        time = self._time
        values = [(*self._values(row)[:5], time(row["created_at"]), *self._values(row)[6:]) for row in rows]
        if self.connection.dialect.name == "postgresql":
            self._copy(values)
        else:
            self.connection.exec_driver_sql(self._insert, values)
        self.connection.commit()
        self.lines = max(self.lines, rows[-1]["line"])

    def _copy(self, values: list[tuple[Any, ...]]) -> None:
        # PostgreSQL's COPY: a tenth of what even a pipelined executemany takes.
        columns = ", ".join(column.name for column in staging.columns)
        raw = self.connection.connection.dbapi_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {staging.name} ({columns}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in values:
                copy.write_row(row)

    def compare(self) -> None:
        """Mark each good line that repeats an earlier one's name, and each naming an existing user."""
        repeated = (
            select(staging.c.username_key)
            .where(staging.c.problem.is_(None))
            .group_by(staging.c.username_key)
            .having(func.count() > 1)
        )
        other = staging.alias("other")
        first = (
            select(func.min(other.c.line))
            .where(other.c.username_key == staging.c.username_key, other.c.problem.is_(None))
            .scalar_subquery()
        )
        self.connection.execute(
            staging.update()
            .where(staging.c.problem.is_(None), staging.c.username_key.in_(repeated))
            .values(duplicate_of=first)
        )
        firsts = staging.c.duplicate_of == staging.c.line
        self.connection.execute(staging.update().where(firsts).values(duplicate_of=None))
        existing = select(users.c.id).where(users.c.username_key == staging.c.username_key).scalar_subquery()
        self.connection.execute(staging.update().where(GOOD).values(user_id=existing))
        self.connection.commit()

    def counts(self) -> dict[str, int]:
        """Return how many staged lines are bad, repeat a name, name an existing user, or are new."""
        row = self.connection.execute(
            select(
                func.count().filter(staging.c.problem.is_not(None)),
                func.count().filter(staging.c.duplicate_of.is_not(None)),
                func.count().filter(and_(GOOD, staging.c.user_id.is_not(None))),
                func.count().filter(and_(GOOD, staging.c.user_id.is_(None))),
            )
        ).one()
        return dict(zip(("bad", "repeated", "existing", "new"), row, strict=True))

    def refused(self, existing_refused: bool) -> Iterator[tuple[int, str | None, int | None, int | None]]:
        """Yield (line, problem, duplicate_of, user_id) of each refused line, in order, a batch at a time."""
        refused = staging.c.problem.is_not(None) | staging.c.duplicate_of.is_not(None)
        if existing_refused:
            refused |= staging.c.user_id.is_not(None)
        columns = (staging.c.line, staging.c.problem, staging.c.duplicate_of, staging.c.user_id)
        yield from self._pages(select(*columns).where(refused))

    def existing(self) -> Iterator[tuple[int, str, bool, int]]:
        """Yield (line, password_hash, active, user_id) of each good line naming an existing user, in order."""
        columns = (staging.c.line, staging.c.password_hash, staging.c.active, staging.c.user_id)
        yield from self._pages(select(*columns).where(GOOD, staging.c.user_id.is_not(None)))

    def _pages(self, query: Any) -> Iterator[Any]:
        # Keyset pages by line: no cursor stays open while the rows are acted on.
        after = 0
        while True:
            page = query.where(staging.c.line > after).order_by(staging.c.line).limit(BATCH)
            rows = self.connection.execute(page).all()
            self.connection.commit()
            yield from rows
            if len(rows) < BATCH:
                return
            after = rows[-1][0]

    def insert_new(self) -> int:
        """Move the good lines naming no user into ``users``, a committed batch at a time; return how many moved.

        A name taken meanwhile (by another door) is left out, not an error.
        """
        columns = ("username", "username_key", "password_hash", "is_active", "created_at")
        source = [staging.c.username, staging.c.username_key, staging.c.password_hash, staging.c.active]
        dialect = postgresql if self.connection.dialect.name == "postgresql" else sqlite
        moved = 0
        for start in range(0, self.lines, BATCH):
            chosen = select(*source, staging.c.created_at).where(
                GOOD, staging.c.user_id.is_(None), staging.c.line > start, staging.c.line <= start + BATCH
            )
            statement = dialect.insert(users).from_select(columns, chosen).on_conflict_do_nothing()
            moved += self.connection.execute(statement, execution_options={"preserve_rowcount": True}).rowcount
            self.connection.commit()
        return moved

