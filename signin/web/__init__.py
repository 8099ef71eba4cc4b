"""The web layer: HTTP only. Views parse a request with a schema, call a rule, and serialize its answer.

A new endpoint goes here: a view in a blueprint (``account/``), its schemas
beside it, a row in ``openapi.OPERATIONS``. Errors become JSON in one place
(``errors``); the edge, headers, throttling and metrics wrap every request.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from signin.web import errors, metrics, throttle
from signin.web.account import bp as account_bp
from signin.web.docs import bp as docs_bp
from signin.web.headers import AnswerHeaders
from signin.web.health import bp as health_bp
from signin.web.json_provider import CompactJSON
from signin.web.openapi import bp as openapi_bp
from signin.web.parsing import Request


def init_app(app: Flask) -> None:
    """Give the app its HTTP surface: request parsing, JSON answers and errors, blueprints, throttling, middleware."""
    app.request_class = Request
    app.json = CompactJSON(app)
    # Every route answers with and without its trailing slash, never by redirect;
    # a doubled slash inside a path is a 404, not a redirect to the merged path.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    errors.init_app(app)
    throttle.init_app(app)
    for blueprint in (account_bp, health_bp, openapi_bp, docs_bp):
        app.register_blueprint(blueprint)
    # Every WSGI middleware, innermost first. Outermost, ProxyFix sets the client's
    # address (trusted proxies only) before anything reads it: throttling, audit
    # lines, metrics.
    metrics.init_app(app)
    # (Replacing the method is Flask's documented way to add WSGI middleware, which mypy cannot know.)
    app.wsgi_app = AnswerHeaders(app.wsgi_app)  # type: ignore[method-assign]
    if app.config["SIGNIN_TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["SIGNIN_TRUSTED_PROXIES"])  # type: ignore[method-assign]
