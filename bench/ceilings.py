"""Bare Flask apps that show what waitress and Flask (plus one Redis GET) can do on this box.

Run by the benchmark as ``python -m bench.ceilings {bare,redis} --port P --threads T --redis-url URL [--quiet-queue]``.
"""

from __future__ import annotations

import argparse

import redis
import waitress
from flask import Flask

from bench.quiet import silence_queue_warning
from signin.serving import AuditWriter, freeze_startup_heap, waitress_options
from signin.settings import DEFAULTS

# The Redis app reads this key; the benchmark stores a session-sized value in it.
KEY = "bench:ceiling"


def bare_app() -> Flask:
    """Return an app answering a small JSON body."""
    app = Flask(__name__)

    @app.get("/")
    def index() -> dict:
        return {"status": "ok"}

    return app


def redis_app(url: str) -> Flask:
    """Return an app answering one Redis GET, on a pooled client, as JSON."""
    app = Flask(__name__)
    client = redis.Redis.from_url(url, decode_responses=True)

    @app.get("/")
    def index() -> dict:
        return {"value": client.get(KEY)}

    return app


def main() -> None:
    """Serve one of the apps with waitress, on the settings ``signin serve`` uses.

    Its process settings too (how lines are logged, the startup heap frozen),
    so a ceiling is one: only the request path differs.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["bare", "redis"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--quiet-queue", action="store_true", help='silence waitress\'s "Task queue depth" warning')
    args = parser.parse_args()
    AuditWriter.start()
    if args.quiet_queue:
        silence_queue_warning()
    app = bare_app() if args.kind == "bare" else redis_app(args.redis_url)
    app.config.update(MAX_CONTENT_LENGTH=DEFAULTS["MAX_CONTENT_LENGTH"], SIGNIN_TRUSTED_PROXIES=0)
    freeze_startup_heap()
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=args.threads, **waitress_options(app))


if __name__ == "__main__":
    main()
