"""``signin users``: create, change, disable, delete and list users, through the same rules as the API."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup, with_appcontext

from signin.cli import user_files
from signin.cli.common import OneLine, name_argument, password_stdin, print_audit_lines, read_password, ready
from signin.rules import sessions, totp, users
from signin.rules.refusals import UsernameTaken, WeakPassword
from signin.store.database import db
from signin.store.models import USERNAME_KEY_LENGTH, User, username_key
from signin.store.outages import REDIS_OUTAGES


@click.group("users", cls=AppGroup)
@with_appcontext
def group() -> None:
    """Create, change, disable, list, import and export users."""
    print_audit_lines()
    ready()


def _named(name: str) -> User:
    user = users.find(name)
    if user is None:
        raise click.ClickException(f"no user named {name!r}")
    return user


def _weak(weak: WeakPassword) -> click.ClickException:
    return click.ClickException(f"the password policy refuses that password: {', '.join(weak.reasons)}")


@group.command("create")
@name_argument
@password_stdin
def create_user(name: str, password_stdin: bool) -> None:
    """Create a user; the password comes from a prompt or standard input, and the password policy applies."""
    if not 1 <= len(name) <= 150 or len(username_key(name)) > USERNAME_KEY_LENGTH:
        raise click.BadParameter(f"a username is 1 to 150 characters long, and {USERNAME_KEY_LENGTH} once normalised")
    try:
        users.create_user(name, read_password(password_stdin))
    except UsernameTaken:
        raise click.ClickException(f"a user named {name!r} already exists") from None
    except WeakPassword as weak:
        raise _weak(weak) from None
    click.echo(f"Created user {name!r}.")


@group.command("set-password")
@name_argument
@password_stdin
def set_password(name: str, password_stdin: bool) -> None:
    """Replace a user's password (the password policy applies), and end every session they have."""
    user = _named(name)
    try:
        ended = users.set_password(user, read_password(password_stdin))
    except WeakPassword as weak:
        raise _weak(weak) from None
    click.echo(f"Password of {user.username!r} changed; ended {ended} session(s).")


@group.command("disable")
@name_argument
def disable(name: str) -> None:
    """Stop a user signing in, and end every session they have."""
    user = _named(name)
    ended = users.disable(user)
    click.echo(f"Disabled {user.username!r}; ended {ended} session(s).")


@group.command("enable")
@name_argument
def enable(name: str) -> None:
    """Let a disabled user sign in again."""
    user = _named(name)
    users.enable(user)
    click.echo(f"Enabled {user.username!r}.")


@group.command("revoke")
@name_argument
def revoke(name: str) -> None:
    """End every session a user has; they can sign in again."""
    user = _named(name)
    ended = users.revoke(user)
    click.echo(f"Ended {ended} session(s) of {user.username!r}.")


@group.command("delete")
@name_argument
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, yes: bool) -> None:
    """Remove a user and end every session they have."""
    user = _named(name)
    username = user.username
    if not yes:
        click.confirm(f"Delete {username!r} and end every session they have?", abort=True)
    try:
        ended = users.delete(user)
    except REDIS_OUTAGES as outage:
        raise OneLine(
            f"Redis cannot be reached ({type(outage).__name__}): {username!r} is disabled, not deleted; run it again"
        ) from None
    click.echo(f"Deleted {username!r}; ended {ended} session(s).")


@group.command("list")
def list_users() -> None:
    """List users, one a line: name, state, TOTP, live sessions."""
    for user in db.session.scalars(db.select(User).order_by(User.id)):
        state = "active" if user.is_active else "disabled"
        second = "totp" if totp.has_totp(user.id) else "no-totp"
        count = sessions.count(user.id)
        click.echo(f"{user.username}\t{state}\t{second}\t{count} session(s)")


@group.command("totp-reset")
@name_argument
def totp_reset(name: str) -> None:
    """Take away a user's TOTP (a lost device) and end every session they have."""
    user = _named(name)
    ended = totp.reset(user)
    click.echo(f"TOTP of {user.username!r} removed; ended {ended} session(s).")


@group.command("sessions")
@name_argument
def list_user_sessions(name: str) -> None:
    """List a user's live sessions, newest first: the account API's fields, one session a line of JSON."""
    user = _named(name)
    for session in sessions.of_user(user.id):
        click.echo(json.dumps(session, ensure_ascii=False))


group.add_command(user_files.import_users)
group.add_command(user_files.export_users)
