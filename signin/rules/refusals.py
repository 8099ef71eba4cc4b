"""What a rule refuses, as exceptions: each door (the account API, the CLI) says it in its own words."""

from __future__ import annotations


class AuthenticationFailed(Exception):
    """A sign-in that must be refused; ``reason`` is for the audit log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MfaRequired(AuthenticationFailed):
    """The password is right, but the account needs a one-time code."""

    def __init__(self) -> None:
        super().__init__("mfa_required")


class WrongPassword(Exception):
    """The current password given to re-authenticate is not the user's."""


class WeakPassword(Exception):
    """A new password the policy refuses; ``reasons`` says why (``signin.rules.policy.REASONS``)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class UsernameTaken(Exception):
    """Another user already has a name that matches this one."""


class WrongCode(Exception):
    """A one-time code (or recovery code) given to a self-service endpoint is not valid, or nothing is pending."""


class TotpAlreadyEnabled(Exception):
    """The user has a confirmed TOTP factor already."""
