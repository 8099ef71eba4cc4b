"""``signin users import`` and ``signin users export``: users in and out as JSON Lines, with their password hashes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO

import click
from click._termui_impl import ProgressBar

from signin.rules import exports, imports

# What an export's file is made with: it holds password hashes.
EXPORT_MODE = 0o600


@click.command("import")
@click.argument("source", metavar="FILE|-")
@click.option("--check", is_flag=True, help="Check every line and write nothing.")
@click.option("--skip-bad", is_flag=True, help="Import the good lines even if some are bad.")
@click.option(
    "--on-conflict",
    type=click.Choice(imports.ON_CONFLICT),
    default="fail",
    show_default=True,
    help="A user of that name exists: a bad line, skipped, or given the line's hash and active (its sessions end).",
)
def import_users(source: str, check: bool, skip_bad: bool, on_conflict: str) -> None:
    """Import users from JSON Lines (FILE, or - for standard input); see docs/importing.md.

    Every line is checked before anything is written; each bad one is told as
    'line N: reason' on standard error. With any bad line, nothing is written
    and the exit status is 1, unless --skip-bad.
    """
    with _opened(source) as (stream, size), _progress(size) as advance:
        summary = imports.import_users(
            stream,
            on_conflict=on_conflict,
            skip_bad=skip_bad,
            check_only=check,
            report=lambda line, reason: click.echo(f"line {line}: {reason}", err=True),
            progress=advance,
        )
    click.echo(_said(summary, check))
    if summary.refused and not skip_bad:
        raise SystemExit(1)


def _said(summary: imports.Summary, check: bool) -> str:
    counts = (
        f"{summary.imported} imported, {summary.updated} updated, {summary.skipped} skipped, "
        f"{summary.refused} refused (of {summary.lines} lines)"
    )
    if check:
        return f"Checked, nothing written: {counts.replace('imported', 'to import').replace('updated', 'to update')}."
    if not summary.written:
        return f"Nothing imported: {summary.refused} bad line(s) (--skip-bad imports the rest)."
    return f"Done: {counts}."


@contextlib.contextmanager
def _opened(source: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if source == "-":
        yield sys.stdin.buffer, None
        return
    try:
        stream = open(source, "rb")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise click.BadParameter(f"cannot read {source}: {error.strerror}") from None
    with stream:
        yield stream, os.fstat(stream.fileno()).st_size


@contextlib.contextmanager
def _progress(size: int | None) -> Iterator[Callable[[int], None]]:
    """Yield a callable told of each batch's bytes: a progress bar on a terminal, else nothing shown."""
    if not sys.stderr.isatty():
        yield lambda _: None
        return
    bar: ProgressBar[int]
    with click.progressbar(length=size, label="Reading", file=sys.stderr) as bar:
        yield bar.update


@click.command("export")
@click.argument("target", metavar="[FILE]", default="-")
def export_users(target: str) -> None:
    """Write every user as JSON Lines, as import reads them (to FILE, made with mode 0600, or standard output).

    Password hashes go out; TOTP secrets and recovery codes never do.
    """
    if target == "-":
        exported = exports.export_users(sys.stdout.write)
    else:
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, EXPORT_MODE)
        except OSError as error:
            raise click.BadParameter(f"cannot make {target}: {error.strerror} (an export never overwrites)") from None
        with open(descriptor, "w", encoding="utf-8") as stream:
            exported = exports.export_users(stream.write)
    click.echo(f"Exported {exported} user(s); TOTP secrets and recovery codes are never exported.", err=True)
