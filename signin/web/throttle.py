"""Throttling with Flask-Limiter on the token store's Redis.

Sign-in has three limits, after the OWASP Authentication Cheat Sheet:

- every attempt per client address (stops one address hammering);
- failed attempts per (username, address), tight (stops guessing one account);
- failed attempts per username from any address (stops distributed
  guessing), from which an address the user signed in from within the last
  ``SIGNIN_REMEMBER_ADDRESS_DAYS`` is exempt, so a guesser cannot lock the
  owner out.

Refresh is limited per address, introspection and revocation per service.
Keys hold addresses and username digests, never a username or a secret.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RequestLimit
from werkzeug.exceptions import HTTPException

from signin.events import Event, Outcome, emit
from signin.store import addresses
from signin.store.models import username_key
from signin.store.redis_client import limiter_options
from signin.web.auth import calling_service
from signin.web.errors import APIError, TemporarilyUnavailable
from signin.web.parsing import body_fields


def client_address() -> str:
    """Return the client's address: the socket's, or as trusted proxies report it (ProxyFix, in create_app)."""
    return request.remote_addr or "unknown"


def _username() -> str | None:
    """Return whose credentials the request tries: the bearer's user, else the body's username."""
    if "session" in g:
        return g.session.username
    try:
        username = body_fields().get("username")
    except (APIError, HTTPException):
        return None
    return username if isinstance(username, str) else None


def _username_digest() -> str:
    username = _username()
    if username is None:
        return "-"
    return hashlib.sha256(username_key(username).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _username_and_address() -> str:
    return f"{_username_digest()}@{client_address()}"


def _service_or_address() -> str:
    # Only a verified name: a name anyone can claim would let them spend that service's allowance.
    service = calling_service()
    return f"service:{service}" if service else client_address()


def credentials_refused() -> None:
    """Count this request as a failed attempt at the user's credentials, in the failure limits."""
    g.credentials_refused = True


def _failed(_: Response) -> bool:
    return bool(g.get("credentials_refused"))


def remember_address(username: str) -> None:
    """Note that this user signed in from this address, exempting it from the per-username limit."""
    config, redis = current_app.config, current_app.extensions["redis"].client
    days = config["SIGNIN_REMEMBER_ADDRESS_DAYS"]
    addresses.remember(redis, config["SIGNIN_REDIS_PREFIX"], username_key(username), client_address(), days)


def _remembered() -> bool:
    username = _username()
    if username is None:
        return False
    redis, prefix = current_app.extensions["redis"].client, current_app.config["SIGNIN_REDIS_PREFIX"]
    return addresses.known(redis, prefix, username_key(username), client_address())


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def _breached(name: str) -> Callable[[RequestLimit], None]:
    def breached(_: RequestLimit) -> None:
        emit(Event.THROTTLED, Outcome.REFUSED, reason=name)

    return breached


def _limit(setting: str, name: str, **options: Any) -> Callable:
    return limiter.limit(_setting(setting), scope=name, on_breach=_breached(name), **options)


def _shared(setting: str, name: str, **options: Any) -> Callable:
    # One count for every endpoint it decorates: a failed password change counts as a failed sign-in, and a
    # sign-in at the token endpoint as one at /signin/.
    return limiter.shared_limit(_setting(setting), scope=name, on_breach=_breached(name), **options)


limiter = Limiter(key_func=client_address, strategy="moving-window", headers_enabled=True)

# Marks the views the limits below decorate (decorators above them copy it, as functools.wraps
# does); every other view skips the limiter.
THROTTLED = "signin_throttled"


@limiter.request_filter
def _no_limit_applies() -> bool:
    # The limiter's bookkeeping costs a fifth of a token check even where no limit applies.
    return not getattr(current_app.view_functions.get(request.endpoint or ""), THROTTLED, False)


def _throttled(*limits: Callable) -> Callable[[Callable], Callable]:
    def decorate(view: Callable) -> Callable:
        limited = view
        for limit in limits:
            limited = limit(limited)

        @functools.wraps(view)
        def throttled(*args: object, **kwargs: object) -> object:
            # With RATELIMIT_ENABLED=false (behind a gateway that throttles, say) the
            # limiter would still do its bookkeeping on every call; skip it instead.
            enabled = current_app.config["RATELIMIT_ENABLED"]
            return (limited if enabled else view)(*args, **kwargs)

        setattr(throttled, THROTTLED, True)
        return throttled

    return decorate


def limited_by_callees(view: Callable) -> Callable:
    """Let the limiter see a view whose limits the functions it calls apply (the token endpoint's grants)."""
    setattr(view, THROTTLED, True)
    return view


_failures = (
    _shared(
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME_AND_ADDRESS",
        "signin_failures_per_username_and_address",
        key_func=_username_and_address,
        deduct_when=_failed,
    ),
    _shared(
        "SIGNIN_LIMIT_FAILURES_PER_USERNAME",
        "signin_failures_per_username",
        key_func=_username_digest,
        deduct_when=_failed,
        exempt_when=_remembered,
    ),
)
throttle_signin = _throttled(_shared("SIGNIN_LIMIT_SIGNIN_PER_ADDRESS", "signin_per_address"), *_failures)
# Endpoints that take the bearer's password or one-time code again: below require_token, keyed by its user.
throttle_reauthentication = _throttled(*_failures)
throttle_refresh = _throttled(_shared("SIGNIN_LIMIT_REFRESH_PER_ADDRESS", "refresh_per_address"))
throttle_service = _throttled(_limit("SIGNIN_LIMIT_SERVICE_CALLS", "calls_per_service", key_func=_service_or_address))


def _retry_after_only_where_it_asks_to_wait(response: Response) -> Response:
    # Flask-Limiter puts its Retry-After on every answer, a 503's own included.
    if response.status_code == 429:
        # It rounds down; "Retry-After: 0" would invite an instant retry.
        if int(response.headers.get("Retry-After", "0")) < 1:
            response.headers["Retry-After"] = "1"
    elif response.status_code == 503:
        response.headers["Retry-After"] = TemporarilyUnavailable.headers["Retry-After"]
    else:
        del response.headers["Retry-After"]
    return response


def init_app(app: Flask) -> None:
    """Bind the limiter to the app's Redis."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.extensions["redis"].limiter_url)
    # The storage, unlike the limiter, is rebuilt for every app it is bound to.
    storage = {"key_prefix": app.config["SIGNIN_REDIS_PREFIX"] + "limits"}
    options = limiter_options(app.config["SIGNIN_STORE_TIMEOUT"], app.extensions["redis"].breaker)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", storage | options)
    if not app.config["RATELIMIT_ENABLED"]:
        return  # the throttled views skip the limiter; its hooks would only cost time
    # Registered before the limiter's own hook, so it runs after it.
    app.after_request(_retry_after_only_where_it_asks_to_wait)
    limiter.init_app(app)
