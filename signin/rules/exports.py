"""Exporting users as the JSON Lines that the import reads: name, password hash, whether active, when created.

Never a TOTP secret or a recovery code: a user with TOTP signs in with the
password alone once imported elsewhere. The rows stream from the database a
batch at a time, so memory does not grow with the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC

from flask import current_app
from sqlalchemy import select

from signin.events import Event, Outcome, emit
from signin.store.database import command_engine
from signin.store.models import User
from signin.store.staging import BATCH


def export_users(write: Callable[[str], object]) -> int:
    """Write every user, oldest first, one JSON line each; return how many."""
    columns = (User.username, User.password_hash, User.is_active, User.created_at)
    engine = command_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
    exported = 0
    try:
        with engine.connect() as connection:
            rows = connection.execution_options(stream_results=True, yield_per=BATCH).execute(
                select(*columns).order_by(User.id)
            )
            for username, password_hash, active, created_at in rows:
                created = created_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
                line = {"username": username, "password_hash": password_hash, "active": active, "created_at": created}
                write(json.dumps(line, ensure_ascii=False) + "\n")
                exported += 1
    except BaseException:
        emit(Event.USERS_EXPORTED, Outcome.FAILURE, exported=exported)  # those written are out all the same
        raise
    finally:
        engine.dispose()
    emit(Event.USERS_EXPORTED, Outcome.SUCCESS, exported=exported)
    return exported
