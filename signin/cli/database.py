"""``signin db``: where the users database's schema stands, and bringing it to this signin's."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from signin.store import schema


@click.group("db", cls=AppGroup)
def group() -> None:
    """Upgrade the users database's schema, or say where it stands (the only commands a schema behind allows)."""


def database_url() -> str:
    return current_app.config["SQLALCHEMY_DATABASE_URI"]


def upgraded() -> str:
    """Upgrade the app's database to this signin's schema; return the line that says what was done."""
    before, after = schema.upgrade(database_url())
    if before == after:
        return f"The database schema is up to date ({after})."
    if before == schema.NEW:
        return f"Made the database schema ({after})."
    if before == schema.UNVERSIONED:
        return f"Upgraded the database made before migrations to the schema {after}; every row kept."
    return f"Upgraded the database schema from {before} to {after}."


@group.command("upgrade")
@with_appcontext
def upgrade() -> None:
    """Bring the database to the schema of this signin (run it before starting a new version)."""
    click.echo(upgraded())


@group.command("current")
@with_appcontext
def current() -> None:
    """Say which schema revision the database is at, and whether this signin can use it."""
    now = schema.current(database_url())
    at = ", ".join(now.found) if now.found else "none"
    if now.state == schema.OK:
        click.echo(f"{at} (head): the schema of this signin.")
    else:
        click.echo(f"{at}: {now.message()}")
