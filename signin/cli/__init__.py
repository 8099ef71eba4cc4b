"""The ``signin`` command: the instance (``init-db``, ``serve``, ``config``, ``totp``), ``db``, ``users``, ``services``.

Each command calls the same rules as the HTTP API (``signin.rules``), and a
command that cannot work says so in one line, never a traceback.
"""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup, routes_command, shell_command

from signin import serving
from signin.cli import database, instance, services, users
from signin.cli.common import BadSetting, OneLine
from signin.settings import SettingError
from signin.store.embedded import EmbeddedUnavailable
from signin.store.outages import DATABASE_OUTAGES, REDIS_OUTAGES
from signin.store.schema import SchemaMismatch

COMMANDS = (
    instance.init_db,
    database.group,
    users.group,
    services.group,
    instance.totp_group,
    instance.serve,
    instance.show_config,
)


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
        except (SettingError, SchemaMismatch) as error:
            raise BadSetting(str(error)) from None
        except (serving.StartupError, EmbeddedUnavailable) as error:
            raise OneLine(str(error)) from None
        except REDIS_OUTAGES as outage:
            raise OneLine(f"Redis cannot be reached ({type(outage).__name__})") from None
        except DATABASE_OUTAGES as outage:
            raise OneLine(f"the database cannot be reached ({type(outage).__name__})") from None


main = SigninGroup(create_app=_create_app, add_default_commands=False, help="Run and administer the signin service.")
main.add_command(shell_command)
main.add_command(routes_command)
for _command in COMMANDS:
    main.add_command(_command)
