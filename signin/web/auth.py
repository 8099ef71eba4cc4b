"""Who calls: ``require_token`` for a bearer's token, ``require_service`` for a registered service.

``init_app`` gives any Flask app that can reach signin's Redis a token store
and signin's JSON errors, so that it can protect its own routes with
``require_token``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request
from redis import Redis

from signin import settings
from signin.rules.services import verify_service
from signin.store import tokens
from signin.store.redis_client import client_from_url
from signin.store.tokens import Session, TokenStore, token_store
from signin.web import errors
from signin.web.errors import InsufficientScope, InvalidClient, InvalidToken


def init_app(app: Flask, redis: Redis | str) -> TokenStore:
    """Give another app a token store over ``redis`` (a client, or the URL of signin's Redis), and signin's errors.

    For any Flask app that protects its routes with ``require_token``: its
    SIGNIN_* config (else signin's settings from the environment, as signin
    reads them) sets the store up, and a refused token (401, 403) or an
    unreachable Redis (503) is answered as signin answers them.
    """
    config = {**settings.load(os.environ), **app.config}
    if isinstance(redis, str):
        redis = client_from_url(redis, config["SIGNIN_STORE_TIMEOUT"])
    store = tokens.init_app(app, redis, config)
    errors.init_token_errors(app)
    return store


def bearer_token() -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, if there is one."""
    scheme, _, token = request.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def require_token(*scopes: str) -> Callable:
    """Demand a live bearer token (holding every scope named) before a view runs.

    The view finds the token's session in ``g.session``.
    """

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            token = bearer_token()
            session: Session | None = token_store().resolve(token) if token else None
            if session is None:
                raise InvalidToken()
            if not set(scopes) <= set(session.scope.split()):
                raise InsufficientScope()
            g.session = session
            return view(*args, **kwargs)

        return wrapped

    return decorator


def calling_service() -> str | None:
    """Return the registered service whose HTTP Basic credentials the request carries, if any.

    Checked once a request: the throttle keys by it, then ``require_service`` demands it.
    """
    if "service" not in g:
        try:
            credentials = request.authorization
        except ValueError:  # werkzeug's Basic parsing raises on a non-ASCII value
            credentials = None
        genuine = (
            credentials is not None
            and credentials.type == "basic"
            and verify_service(credentials.username or "", credentials.password or "")
        )
        g.service = credentials.username if genuine and credentials is not None else None
    return g.service


def require_service(view: Callable) -> Callable:
    """Demand HTTP Basic credentials of a registered service before a view runs; ``g.service`` names it."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if calling_service() is None:
            raise InvalidClient()
        return view(*args, **kwargs)

    return wrapped
