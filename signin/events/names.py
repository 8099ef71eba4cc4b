"""The names of events and their outcomes, as audit lines say them and metrics count them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple


class Event(StrEnum):
    """Every event an audit line names; ``signin.events.metrics`` counts by the same names."""

    SIGNIN = "signin"
    MFA_REQUIRED = "mfa_required"
    RECOVERY_CODE_USED = "recovery_code_used"
    REFRESH = "refresh"
    REFRESH_REUSE = "refresh_reuse"
    SIGNOUT = "signout"
    REVOKE = "revoke"
    SESSION_ENDED = "session_ended"
    SESSIONS_ENDED = "sessions_ended"
    SESSION_EVICTED = "session_evicted"
    PASSWORD_CHANGED = "password_changed"
    THROTTLED = "throttled"
    TOTP_ENABLED = "totp_enabled"
    TOTP_DISABLED = "totp_disabled"
    TOTP_RESET = "totp_reset"
    USER_CREATED = "user_created"
    PASSWORD_SET = "password_set"
    PASSWORD_REHASHED = "password_rehashed"
    USERS_IMPORTED = "users_imported"
    USERS_EXPORTED = "users_exported"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    USER_REVOKED = "user_revoked"
    USER_DELETED = "user_deleted"
    SERVICE_ADDED = "service_added"
    SERVICE_REMOVED = "service_removed"


class Outcome(StrEnum):
    """How an audited event ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    SESSION_REVOKED = "session_revoked"
    NO_SUCH_TOKEN = "no_such_token"


# Why a sign-in failed (an audit line's reason), each a series of signin_signins_total.
SIGNIN_FAILURES = ("unknown_user", "bad_password", "disabled", "bad_code", "credentials_changed")
# Why a refresh failed.
REFRESH_FAILURES = ("unknown", "reused", "reuse_detected")


class Happened(NamedTuple):
    """One event as its readers get it: what, how it ended, why, whose, and what else it says."""

    event: Event
    outcome: str
    reason: str | None
    username: str | None
    client_id: str | None
    details: Mapping[str, object]
