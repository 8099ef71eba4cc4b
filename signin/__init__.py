"""signin: a small sign-in and revocable-token service for WSGI shops."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error handlers, CLI."""
    from signin.json_provider import CompactJSON
    from signin.parsing import Request

    app = Flask(__name__, instance_relative_config=True)
    app.request_class = Request
    app.config.from_object("config.Config")
    if config is not None:
        app.config.update(config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "signin.db")
    app.json = CompactJSON(app)
    # Every route answers with and without its trailing slash, never by redirect;
    # a doubled slash inside a path is a 404, not a redirect to the merged path.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False

    from werkzeug.middleware.proxy_fix import ProxyFix

    from signin import auth, cli, errors, metrics, throttle
    from signin.account import bp as account_bp
    from signin.docs import bp as docs_bp
    from signin.extensions import db, redis_client
    from signin.headers import AnswerHeaders
    from signin.health import bp as health_bp
    from signin.openapi import bp as openapi_bp

    db.init_app(app)
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
    app.wsgi_app = metrics.TimedRequests(app.wsgi_app, metrics.init_app(app))
    app.wsgi_app = AnswerHeaders(app.wsgi_app)
    if app.config["SIGNIN_TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["SIGNIN_TRUSTED_PROXIES"])
    return app


def freeze_startup_heap() -> None:
    """Spare what lives as long as the process (app, modules) the cyclic GC's full scans.

    With the app built, a full collection takes about 90 ms, every thread
    stopped; after ``gc.freeze()`` it skips those objects. Call it once, when
    the app is built and before serving.
    """
    gc.collect()
    gc.freeze()


def prepare_to_serve(app: Flask) -> None:
    """Do before the first request what it would otherwise pay for, then freeze the startup heap.

    The dummy password hash: made on demand, it would make the first unknown
    user's sign-in cost two checks, and tell.
    """
    from signin import passwords

    passwords.warm_up(app.config["SIGNIN_PASSWORD_METHOD"])
    freeze_startup_heap()
