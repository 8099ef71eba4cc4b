"""Importing users from JSON Lines: every line checked before anything is written, then written in batches.

A line is ``{"username", "password_hash"}`` or ``{"username", "password"}``,
with ``active`` and ``created_at`` optional. A hash is taken as it is when
``hash_formats.check_hash`` accepts it; a password in clear is hashed with the
configured method (the policy does not apply: it was the user's before). Lines
stream through ``signin.store.staging``, so memory does not grow with the
file; a bad line is reported by number and reason, never quoting a password
or hash. A user the file names who exists already is a bad line, skipped, or
updated (``on_conflict``); an update is a password set, through the same rule
(``users.set_password_hash``), so it ends the user's sessions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from flask import current_app

from signin.events import Event, Outcome, emit
from signin.rules import users
from signin.rules.hash_formats import check_hash
from signin.rules.passwords import configured_method, hash_password
from signin.store.database import command_engine, db
from signin.store.models import USERNAME_KEY_LENGTH, User, storable, username_key, utc_now
from signin.store.staging import BATCH, Staging

ON_CONFLICT = ("fail", "skip", "update")
# A longer line is refused unread: no line may make the import's memory grow.
MAX_LINE_BYTES = 64 * 1024
# Found once every line is staged (signin.store.staging.Staging.compare).
UNCOMPARED = {"duplicate_of": None, "user_id": None}
FIELDS = ("username", "username_key", "password_hash", "active", "created_at")
# A byte order mark, which some tools put before the first line.
BOM = "\ufeff"
EXISTS = "a user of that name exists (--on-conflict skip or update imports the rest)"


@dataclass
class Summary:
    """What an import did: lines read (blank ones aside), users imported, updated, skipped, lines refused."""

    lines: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    refused: int = 0
    written: bool = False


class BadLine(ValueError):
    """A line that cannot be imported; the message says why, never quoting a password or hash."""


def import_users(
    stream: IO[bytes],
    *,
    on_conflict: str = "fail",
    skip_bad: bool = False,
    check_only: bool = False,
    report: Callable[[int, str], None],
    progress: Callable[[int], None] = lambda _: None,
) -> Summary:
    """Import the users of a JSON Lines stream; ``report`` hears each bad line, ``progress`` each batch's bytes.

    Nothing is written if a line is bad (unless ``skip_bad``) or if
    ``check_only``.
    """
    method = configured_method()
    summary = Summary()
    engine = command_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as connection:
            staged = Staging(connection)
            batch: list[dict[str, Any]] = []
            for number, raw in _lines(stream, progress):
                summary.lines += 1
                batch.append(_staged(number, raw, method, hashing=not check_only))
                if len(batch) == BATCH:
                    staged.add(batch)
                    batch = []
            staged.add(batch)
            staged.compare()
            counts = staged.counts()
            for line, problem, first, _ in staged.refused(existing_refused=on_conflict == "fail"):
                report(line, problem or (f"the same username as line {first}" if first else EXISTS))
            summary.refused = counts["bad"] + counts["repeated"] + (counts["existing"] if on_conflict == "fail" else 0)
            if check_only or (summary.refused and not skip_bad):
                summary.imported, summary.updated = counts["new"], counts["existing"] * (on_conflict == "update")
                summary.skipped = counts["existing"] * (on_conflict == "skip")
                return summary
            summary.written = True
            summary.imported = staged.insert_new()
            summary.skipped = counts["new"] - summary.imported  # taken meanwhile, by another door
            if on_conflict == "skip":
                summary.skipped += counts["existing"]
            elif on_conflict == "update":
                summary.updated = _update(staged)
    finally:
        engine.dispose()
        if summary.written or (summary.refused and not check_only):
            outcome = Outcome.SUCCESS if summary.written else Outcome.REFUSED
            emit(Event.USERS_IMPORTED, outcome, imported=summary.imported, updated=summary.updated,
                 skipped=summary.skipped, refused=summary.refused)
    return summary


def _update(staged: Staging) -> int:
    """Give each existing user the file names their line's hash and ``active``, as a password set does."""
    updated = 0
    for _, password_hash, active, user_id in staged.existing():
        user = db.session.get(User, user_id)
        if user is not None:  # deleted meanwhile
            users.set_password_hash(user, password_hash, active=active)
            updated += 1
    return updated


def _lines(stream: IO[bytes], progress: Callable[[int], None]) -> Iterator[tuple[int, bytes | None]]:
    """Yield each non-blank line's number and bytes (None: too long to read), telling ``progress`` of bytes read."""
    number, unreported = 0, 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            break
        number += 1
        unreported += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                unreported += len(rest)
            unreported += len(rest)
            yield number, None
        elif raw.strip():
            yield number, raw
        if unreported >= 1 << 20:
            progress(unreported)
            unreported = 0
    progress(unreported)


def _staged(number: int, raw: bytes | None, method: str, *, hashing: bool) -> dict[str, Any]:
    """Return a line as the staging table holds it: its fields, or the problem found."""
    try:
        fields = _fields(raw, method, hashing=hashing)
    except BadLine as bad:
        return {"line": number, "problem": str(bad), **dict.fromkeys(FIELDS), **UNCOMPARED}
    return {"line": number, "problem": None, **fields, **UNCOMPARED}


def _fields(raw: bytes | None, method: str, *, hashing: bool) -> dict[str, Any]:
    if raw is None:
        raise BadLine(f"longer than {MAX_LINE_BYTES} bytes")
    try:
        value = json.loads(raw.decode("utf-8").removeprefix(BOM))
    except UnicodeDecodeError:
        raise BadLine("not UTF-8") from None
    except ValueError:
        raise BadLine("not valid JSON") from None
    if not isinstance(value, dict):
        raise BadLine("not a JSON object")
    username, key = _username(value.get("username"))
    active = value.get("active", True)
    if not isinstance(active, bool):
        raise BadLine("active is not true or false")
    return {
        "username": username,
        "username_key": key,
        "password_hash": _password_hash(value, method, hashing=hashing),
        "active": active,
        "created_at": _created_at(value.get("created_at")),
    }


def _username(username: object) -> tuple[str, str]:
    """Return a line's username and the key it is matched by."""
    if not isinstance(username, str):
        raise BadLine("no username (a string)")
    if not storable(username):
        raise BadLine("the username is not valid text (it holds NUL, or is not Unicode)")
    key = username_key(username)
    if not 1 <= len(username) <= 150 or len(key) > USERNAME_KEY_LENGTH:
        raise BadLine(f"the username is not 1 to 150 characters long, and {USERNAME_KEY_LENGTH} once normalised")
    return username, key


def _password_hash(value: dict[str, Any], method: str, *, hashing: bool) -> str | None:
    if ("password" in value) == ("password_hash" in value):
        raise BadLine("a line has either password_hash or password, and not both")
    if "password_hash" in value:
        password_hash = value["password_hash"]
        if not isinstance(password_hash, str):
            raise BadLine("the password_hash is not a string")
        problem = check_hash(password_hash, method)
        if problem:
            raise BadLine(problem)
        return password_hash
    password = value["password"]
    if not isinstance(password, str) or not 1 <= len(password) <= 1024 or not storable(password):
        raise BadLine("the password is not text of 1 to 1024 characters")
    return hash_password(password, method) if hashing else None


def _created_at(value: object) -> datetime:
    if value is None:
        return utc_now()
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) and "T" in value.upper() else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadLine("created_at is not an RFC 3339 time with its offset (2024-05-01T12:00:00Z)")
    return when.astimezone(UTC).replace(tzinfo=None)
