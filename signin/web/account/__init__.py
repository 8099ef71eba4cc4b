"""The ``account`` blueprint: sign-in and the token lifecycle."""

from signin.web.account import self_service, token  # noqa: F401  (their views join the blueprint)
from signin.web.account.views import bp

__all__ = ["bp"]
