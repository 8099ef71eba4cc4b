"""signin: a small sign-in and revocable-token service for WSGI shops."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error handlers, CLI."""
    from signin import settings
    from signin.json_provider import CompactJSON
    from signin.parsing import Request

    app = Flask(__name__, instance_path=settings.instance_path(os.environ, config))
    app.request_class = Request
    app.config.from_mapping(settings.load(os.environ, config))
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "signin.db")
    app.json = CompactJSON(app)
    # Every route answers with and without its trailing slash, never by redirect;
    # a doubled slash inside a path is a 404, not a redirect to the merged path.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False

    from werkzeug.middleware.proxy_fix import ProxyFix

    from signin import auth, cli, database, errors, metrics, passwords, throttle
    from signin.account import bp as account_bp
    from signin.docs import bp as docs_bp
    from signin.extensions import redis_client
    from signin.headers import AnswerHeaders
    from signin.health import bp as health_bp
    from signin.openapi import bp as openapi_bp

    passwords.bound(app.config["SIGNIN_HASH_CONCURRENCY"], app.config["SIGNIN_HASH_WAIT_SECONDS"])
    database.init_app(app)
    redis_client.init_app(app)
    auth.init_app(app, app.extensions["redis"].client)
    errors.init_app(app)
    throttle.init_app(app)
    cli.init_app(app)
    app.register_blueprint(account_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(docs_bp)

    # Every WSGI middleware, innermost first. Outermost, ProxyFix sets the client's
    # address (trusted proxies only) before anything reads it: throttling, audit
    # lines, metrics.
    # (Replacing the method is Flask's documented way to add WSGI middleware, which mypy cannot know.)
    app.wsgi_app = metrics.TimedRequests(app.wsgi_app, metrics.init_app(app))  # type: ignore[method-assign]
    app.wsgi_app = AnswerHeaders(app.wsgi_app)  # type: ignore[method-assign]
    if app.config["SIGNIN_TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["SIGNIN_TRUSTED_PROXIES"])  # type: ignore[method-assign]
    return app
