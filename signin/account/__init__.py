"""The ``account`` blueprint: sign-in and the token lifecycle."""

from signin.account import self_service  # noqa: F401  (its views join the blueprint)
from signin.account.views import bp

__all__ = ["bp"]
