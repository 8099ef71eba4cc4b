"""The ``account`` blueprint: sign-in and the token lifecycle."""

from signin.web.account import self_service  # noqa: F401  (its views join the blueprint)
from signin.web.account.views import bp

__all__ = ["bp"]
