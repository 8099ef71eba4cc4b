"""The SQL tables: users, their second factors, and the internal services that may call us.

A change to a table here goes with a revision in ``migrations/versions/``
(``tests/test_migrations.py`` checks that the two agree).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from signin.store.database import db

if TYPE_CHECKING:  # what db.Model is, for type checkers: Flask-SQLAlchemy builds it from Base when it runs
    from signin.store.database import Base as Model
else:
    Model = db.Model

# Room for a name's key: folding and NFKC lengthen some characters ("ß" to "ss",
# one Arabic ligature to 18 characters), so a few 150-character names need more.
USERNAME_KEY_LENGTH = 600


def username_key(username: str) -> str:
    """Return the form usernames are matched in: NFKC, case-folded, NFKC again."""
    folded = unicodedata.normalize("NFKC", username).casefold()
    return unicodedata.normalize("NFKC", folded)


def storable(text: str) -> bool:
    """Tell whether text can be stored and hashed: valid Unicode, without NUL.

    JSON can carry lone surrogates (``"\\ud800"``), which no UTF-8 encoder
    accepts, and PostgreSQL refuses NUL in text.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def utc_now() -> datetime:
    """Return the time as the tables keep it: UTC, without an offset (their columns have none)."""
    return datetime.now(UTC).replace(tzinfo=None)


class User(Model):
    """Someone who signs in; matched by ``username_key``, never by raw name."""

    __tablename__ = "users"
    # SQLite would otherwise give a deleted user's id to the next one, and with it whatever still named it
    # (a table made by init-db before this setting keeps doing so; a delete ends the sessions first, though).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    username_key: Mapped[str] = mapped_column(String(USERNAME_KEY_LENGTH), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # Set by the rules: a successful sign-in, and every password set or change (not a re-hash).
    last_sign_in_at: Mapped[datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)

    @classmethod
    def find(cls, username: str) -> User | None:
        """Return the user a typed username names, if any."""
        return db.session.scalar(db.select(cls).filter_by(username_key=username_key(username)))


class TotpFactor(Model):
    """A user's TOTP secret, encrypted (``signin.rules.one_time_codes``); pending until confirmed with a code."""

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(512))
    confirmed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class RecoveryCode(Model):
    """One of a user's single-use recovery codes, kept only as a digest."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class Service(Model):
    """An internal service allowed to introspect and revoke tokens."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # SHA-256 of a 256-bit random secret: a slow hash would add nothing
    # against guessing and cost every introspection call.
    secret_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
