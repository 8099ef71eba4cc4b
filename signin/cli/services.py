"""``signin services``: register the internal services that introspect and revoke tokens."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from signin.cli.common import name_argument, print_audit_lines, ready
from signin.rules import services


@click.group("services", cls=AppGroup)
@with_appcontext
def group() -> None:
    """Register the internal services that introspect and revoke tokens."""
    print_audit_lines()
    ready()


@group.command("add")
@name_argument
def add_service(name: str) -> None:
    """Register a service; its secret is printed once, as the last line."""
    if not 1 <= len(name) <= 100 or ":" in name:
        raise click.BadParameter("a service name is 1 to 100 characters, without ':'")
    try:
        secret = services.add_service(name)
    except services.ServiceExists:
        raise click.ClickException(f"a service named {name!r} already exists") from None
    click.echo(f"Registered service {name!r}. Its secret, shown only this once:")
    click.echo(secret)


@group.command("list")
def list_services() -> None:
    """List registered services, one a line: name, created."""
    for service in services.list_services():
        click.echo(f"{service.name}\t{service.created_at:%Y-%m-%d %H:%M:%S}")


@group.command("remove")
@name_argument
def remove_service(name: str) -> None:
    """Forget a service; running servers refuse its secret within SIGNIN_SERVICE_CACHE_SECONDS."""
    if not services.remove_service(name):
        raise click.ClickException(f"no service named {name!r}")
    click.echo(f"Removed service {name!r}.")
