"""What every server needs before its first request, done in one place whatever the server.

``signin serve``, ``wsgi:app`` and ``signin.wsgi:app`` (gunicorn, uWSGI,
mod_wsgi, ``waitress-serve``) and ``waitress-serve --call
signin.wsgi:create_app`` all build their app with ``app_for_server``, so each
gets the same start-up:

- audit lines printed to standard error from one writer thread, started
  again in every forked worker;
- Redis answering (the embedded one joined, or started), or a refusal to start;
- the database at this signin's schema (read once here), or a refusal to start
  naming the command to run (exit 2, like a bad setting);
- the dummy password hash made, so the first unknown user costs one check;
- nothing opened at start-up left for a forked worker to inherit, and the
  startup heap frozen;
- SIGTERM made an exit, where the server leaves it to its default
  (``waitress-serve``), so that the queued audit lines are written and the
  embedded Redis is left (and stopped by the last process to leave).

A start that cannot work raises ``StartupError`` (or ``SettingError``, or
``SchemaMismatch``), whose message is the one line to print;
``exit_with_one_line`` does the printing.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TypeVar

from flask import Flask, current_app

from signin.events import audit
from signin.rules import one_time_codes, passwords
from signin.settings import SettingError, shown
from signin.store import schema
from signin.store.database import db
from signin.store.embedded import EmbeddedUnavailable
from signin.store.models import TotpFactor
from signin.store.outages import DATABASE_OUTAGES, REDIS_OUTAGES

log = logging.getLogger(__name__)

# Exit statuses: a setting that cannot be used, like a usage error; anything else that stops start-up.
BAD_SETTING, CANNOT_START = 2, 1
# gunicorn halts (rather than restarting the worker for ever) when a worker exits with this.
GUNICORN_APP_LOAD_ERROR = 4

# Open connections waitress keeps before it stops accepting, and seconds an idle one may stay.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT = 30

F = TypeVar("F", bound=Callable[..., Any])


class StartupError(RuntimeError):
    """The service cannot start; the message is one line saying why."""


def app_for_server(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app and prepare it to serve (see the module's docstring)."""
    from signin import create_app

    app = create_app(config)
    prepare(app)
    return app


def prepare(app: Flask) -> None:
    """Do, before the first request, what every server needs: logging, the stores checked, warm-up."""
    exit_on_sigterm()
    AuditWriter.start()
    with app.app_context():
        try:
            _check_redis(app)
            _check_database(app)
            _check_totp_key()
            passwords.warm_up(app.config["SIGNIN_PASSWORD_METHOD"])
        finally:
            # A worker forked from here must not share this process's database connections;
            # a start refused must not leave them open.
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
    freeze_startup_heap()


def waitress_options(app: Flask) -> dict[str, Any]:
    """Return waitress settings to match the app: its body limit, its proxies, room for idle connections.

    waitress's defaults read a body of up to 1 GB to disk before the app's 413,
    and let 100 idle connections (one client's keep-alives, a slowloris) lock
    everyone else out for two minutes.
    """
    return {
        "ident": "signin",
        "max_request_body_size": app.config["MAX_CONTENT_LENGTH"],
        "connection_limit": CONNECTION_LIMIT,
        "channel_timeout": CHANNEL_TIMEOUT,
        # select() cannot watch a descriptor numbered above 1023; poll() can.
        "asyncore_use_poll": True,
        # waitress drops X-Forwarded-* itself unless told not to; ProxyFix (SIGNIN_TRUSTED_PROXIES) reads them.
        "clear_untrusted_proxy_headers": not app.config["SIGNIN_TRUSTED_PROXIES"],
    }


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit`` if nothing else handles it, so the process exits rather than dies.

    A process that SIGTERM kills outright runs no ``atexit`` handler: its queued
    audit lines are lost, and the embedded Redis it started outlives it.
    waitress treats ``SystemExit`` as a stop, letting requests in flight finish.
    A server that handles SIGTERM itself (gunicorn's workers, uWSGI) keeps its
    own handler, and only the main thread may set one.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)


def _exit(signum: int, frame: object) -> None:
    sys.exit(0)


def freeze_startup_heap() -> None:
    """Spare what lives as long as the process (app, modules) the cyclic GC's full scans.

    With the app built, a full collection takes about 90 ms, every thread
    stopped; after ``gc.freeze()`` it skips those objects.
    """
    gc.collect()
    gc.freeze()


def _check_redis(app: Flask) -> None:
    try:
        app.extensions["redis"].client.ping()
    except REDIS_OUTAGES as outage:
        where = shown_redis(app)
        raise StartupError(f"Redis at {where} cannot be reached ({type(outage).__name__})") from None


def shown_redis(app: Flask) -> str:
    """Return where the app's Redis is, as an operator reads it: REDIS_URL masked, or the embedded socket."""
    from signin.settings import BY_KEY

    url = app.config["REDIS_URL"]
    return shown(BY_KEY["REDIS_URL"], url) if url else f"{app.extensions['redis'].embedded.url} (embedded)"


def _check_database(app: Flask) -> None:
    """Refuse a SQLite file that cannot be opened, or a schema behind or ahead; only warn of one away or empty.

    Refresh, ``me`` and signout never need the database, so a server away at
    start-up is no reason not to serve them.
    """
    try:
        state = schema.require_current()
    except DATABASE_OUTAGES as outage:
        if db.engine.dialect.name == "sqlite":
            raise StartupError(f"the SQLite database cannot be opened ({getattr(outage, 'orig', outage)})") from None
        log.warning("the database cannot be reached (%s): sign-in answers 503 until it can", type(outage).__name__)
        return
    if state != schema.OK:
        log.warning("%s; until then /readyz answers 503 and sign-in cannot work", schema.NOT_INITIALISED_MESSAGE)


def _check_totp_key() -> None:
    """Refuse to start if users have TOTP and no key opens their secrets: none could sign in."""
    try:
        factor = db.session.scalar(db.select(TotpFactor).filter_by(confirmed=True).limit(1))
    except DATABASE_OUTAGES:  # away, or not initialised: _check_database has said so
        db.session.rollback()
        return
    if factor is None:
        return
    if not one_time_codes.has_key():
        raise StartupError(
            "users have TOTP but there is no key to decrypt their secrets: set SIGNIN_TOTP_KEY "
            f"or restore {os.path.join(current_app.instance_path, one_time_codes.KEY_FILE)}"
        )
    try:
        one_time_codes.decrypt(factor.secret)
    except one_time_codes.InvalidToken:
        raise StartupError("no key in SIGNIN_TOTP_KEY (or the instance's totp.key) decrypts the TOTP secrets") from None


class AuditWriter:
    """Print log lines to standard error, audit lines from one writer thread, once per process.

    A request thread only queues its audit line (the logging cookbook's answer
    to handlers that block). Writing it would give the GIL away mid-request,
    and under load win it back only much later: in an A/B under waitress,
    refresh answered a quarter more requests this way. Only audit lines take
    the queue: routing waitress's own warnings there too cost GET me about
    15 %, for it wakes the writer thread under exactly that load. A forked
    worker (gunicorn) inherits no running thread, so it starts a writer of its
    own; at exit every queued line is written.
    """

    _listener: QueueListener | None = None

    @classmethod
    def start(cls) -> None:
        if cls._listener is not None:
            return
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        # Lines are bare messages, so skip finding the caller's frame (the logging HOWTO's
        # "Optimization" section), a tenth of an audit line. Thread and process ids stay:
        # a server's own formats (gunicorn's) print them.
        logging._srcfile = None
        audit.log.propagate = False
        cls._listen()
        atexit.register(cls.stop)
        os.register_at_fork(after_in_child=cls._listen)

    @classmethod
    def stop(cls) -> None:
        """Write every line still queued, and stop the writer."""
        if cls._listener is not None:
            cls._listener.stop()

    @classmethod
    def _listen(cls) -> None:
        lines: queue.SimpleQueue = queue.SimpleQueue()
        for handler in list(audit.log.handlers):
            if isinstance(handler, QueueHandler):
                audit.log.removeHandler(handler)
        audit.log.addHandler(QueueHandler(lines))
        cls._listener = QueueListener(lines, logging.StreamHandler())
        cls._listener.start()


def exit_with_one_line(build: F) -> F:
    """Turn a start-up failure of ``build`` into one line on standard error and an exit, never a traceback."""

    @functools.wraps(build)
    def building(*args: Any, **kwargs: Any) -> Any:
        try:
            return build(*args, **kwargs)
        except (SettingError, schema.SchemaMismatch) as error:
            status = BAD_SETTING
            message = str(error)
        except (StartupError, EmbeddedUnavailable) as error:
            status = CANNOT_START
            message = str(error)
        print(f"signin: {message}", file=sys.stderr, flush=True)
        # Under gunicorn a worker's plain exit would only be restarted, failing again for ever.
        raise SystemExit(GUNICORN_APP_LOAD_ERROR if "gunicorn.workers" in sys.modules else status)

    return building  # type: ignore[return-value]
