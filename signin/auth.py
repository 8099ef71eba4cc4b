"""The embedding helpers at their address before 0.2: ``signin.web.auth`` is where they live now."""

from signin.web.auth import init_app, require_service, require_token, token_store

__all__ = ["init_app", "require_service", "require_token", "token_store"]
