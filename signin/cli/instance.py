"""Commands for the instance as a whole: its database (``init-db``), its settings, its server, its TOTP key."""

from __future__ import annotations

import os
import secrets

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from signin import serving, settings
from signin.cli import database
from signin.cli.common import print_audit_lines, ready
from signin.rules import one_time_codes, users
from signin.store.database import db
from signin.store.models import TotpFactor, User
from signin.web import edge

ADMIN_PASSWORD_BYTES = 18


@click.command("init-db")
@with_appcontext
@click.option("--admin", is_flag=True, help="If there are no users yet, create 'admin' and print its password.")
def init_db(admin: bool) -> None:
    """Make the database at the newest schema, or bring an older one to it (as ``signin db upgrade`` does)."""
    print_audit_lines()
    done = database.upgraded()
    if not done.startswith("The database schema is up to date"):
        click.echo(done)
    click.echo("Database ready.")
    made = one_time_codes.make_key_file()
    if made is not None:
        click.echo(f"Made the key that encrypts TOTP secrets: {made} (keep it, and back it up with the database).")
    if not admin:
        return
    if User.find("admin") is not None:
        click.echo("User 'admin' exists. To set its password: signin users set-password admin")
        return
    if db.session.scalar(db.select(User.id).limit(1)) is not None:
        click.echo("Users exist, so no 'admin' was created.")
        return
    password = secrets.token_urlsafe(ADMIN_PASSWORD_BYTES)
    users.create_user("admin", password)
    click.echo("Created user 'admin'. Its password, shown only this once:")
    click.echo(password)


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, threads: int) -> None:
    """Serve the API with waitress; audit lines go to standard error. SIGTERM stops it gracefully."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    serving.prepare(app)
    try:
        server = edge.create_server(app, host=host, port=port, threads=threads, **serving.waitress_options(app))
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
    embedded = app.extensions["redis"].embedded
    if embedded is not None:
        click.echo(f"Embedded Redis for other programs: REDIS_URL={embedded.url}")
    click.echo(f"Serving signin on http://{host}:{port} with {threads} threads.")
    server.run()


@click.command("config")
def show_config() -> None:
    """Print the settings in effect, one a line (secrets and passwords in URLs masked)."""
    loaded = settings.load(os.environ)
    instance = settings.instance_path(os.environ) or Flask("signin").instance_path
    click.echo(f"SIGNIN_INSTANCE_PATH={instance}")
    for setting in settings.SETTINGS:
        click.echo(f"{setting.variable}={settings.shown(setting, loaded[setting.key])}")


@click.group("totp", cls=AppGroup)
@with_appcontext
def totp_group() -> None:
    """Manage the key that encrypts TOTP secrets."""
    ready()


@totp_group.command("rotate-key")
def rotate_key() -> None:
    """Encrypt every TOTP secret again under the first key of SIGNIN_TOTP_KEY (the others still decrypt)."""
    factors = list(db.session.scalars(db.select(TotpFactor)))
    try:
        for factor in factors:
            factor.secret = one_time_codes.rotate(factor.secret)
    except one_time_codes.InvalidToken:
        raise click.ClickException("a TOTP secret is encrypted under none of the keys in SIGNIN_TOTP_KEY") from None
    db.session.commit()
    click.echo(f"Encrypted {len(factors)} TOTP secret(s) under the first key of SIGNIN_TOTP_KEY.")
