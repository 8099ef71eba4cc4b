"""Alembic's environment: run the revisions on the connection ``signin.store.schema`` hands over.

Run by the ``alembic`` command instead (a developer making a revision with
``alembic revision --autogenerate``, see docs/development.md), it uses the
database ``DATABASE_URL`` names.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from signin.store import models  # noqa: F401 (the tables the models declare, for autogenerate to compare)
from signin.store.database import db


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        # SQLite alters a table by copying it (Alembic's batch mode); a no-op where ALTER suffices.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_the_command_line() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL to the database to compare the models with (signin db upgrade it first)")
    engine = create_engine(url)
    with engine.connect() as connection:
        run(connection)
        connection.commit()
    engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    run_from_the_command_line()
