"""signin: a small sign-in and revocable-token service for WSGI shops.

Three layers, imports running downward only (import-linter keeps them, see
``pyproject.toml``): ``web`` (HTTP) calls ``rules`` (what may happen, one
function for every door), which emit ``events`` and use the ``store`` (Redis
and SQL). Beside them: ``settings``, the ``cli``, and ``serving`` (start-up
for every server), with ``wsgi`` the entry point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, stores, the token store, the HTTP surface, the CLI."""
    from signin import cli, settings, web
    from signin.rules import passwords
    from signin.store import database, tokens
    from signin.store.redis_client import redis_client

    app = Flask(__name__, instance_path=settings.instance_path(os.environ, config))
    app.config.from_mapping(settings.load(os.environ, config))
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "signin.db")
    passwords.bound(app.config["SIGNIN_HASH_CONCURRENCY"], app.config["SIGNIN_HASH_WAIT_SECONDS"])
    database.init_app(app)
    redis_client.init_app(app)
    tokens.init_app(app, app.extensions["redis"].client)
    web.init_app(app)
    cli.init_app(app)
    return app
