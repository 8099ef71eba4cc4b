"""The ``account`` blueprint: sign-in and the token lifecycle."""

from signin.account.views import bp

__all__ = ["bp"]
