"""Internal services: register them, and check the credentials they present.

A verified credential is remembered in the process for
``SIGNIN_SERVICE_CACHE_SECONDS``, so introspection does not query the
database on every call; removing a service takes effect in this process at
once and in other processes within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import current_app

from signin.events import Event, Outcome, emit
from signin.store.database import db
from signin.store.models import Service, storable

SECRET_BYTES = 32
# Compared against when the name is unknown, so that costs what a match does.
_NO_DIGEST = "0" * 64


class ServiceExists(Exception):
    """A service with that name is already registered."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def add_service(name: str) -> str:
    """Register a service and return its secret, which is stored only as a digest."""
    if db.session.scalar(db.select(Service.id).filter_by(name=name)) is not None:
        raise ServiceExists(name)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    db.session.add(Service(name=name, secret_digest=_digest(secret)))
    db.session.commit()
    emit(Event.SERVICE_ADDED, Outcome.SUCCESS, service=name)
    return secret


def remove_service(name: str) -> bool:
    """Forget a service; tell whether it existed."""
    service = db.session.scalar(db.select(Service).filter_by(name=name))
    if service is None:
        return False
    db.session.delete(service)
    db.session.commit()
    _verified().pop(name, None)
    emit(Event.SERVICE_REMOVED, Outcome.SUCCESS, service=name)
    return True


def list_services() -> list[Service]:
    """Return every registered service, oldest first."""
    return list(db.session.scalars(db.select(Service).order_by(Service.id)))


def verify_service(name: str, secret: str) -> bool:
    """Tell whether a name and secret belong to a registered service, in constant time."""
    presented, now = _digest(secret), time.monotonic()
    remembered = _verified().get(name)
    if remembered and remembered[1] > now and hmac.compare_digest(presented, remembered[0]):
        return True
    # No service has a name the database cannot hold, and PostgreSQL would refuse to compare it.
    stored = db.session.scalar(db.select(Service.secret_digest).filter_by(name=name)) if storable(name) else None
    if not hmac.compare_digest(presented, stored or _NO_DIGEST) or stored is None:
        return False
    _verified()[name] = (stored, now + current_app.config["SIGNIN_SERVICE_CACHE_SECONDS"])
    return True


def _verified() -> dict[str, tuple[str, float]]:
    # Per app: name -> (secret digest, remembered until). Only good credentials
    # are remembered, so a wrong secret always reaches the database.
    return current_app.extensions.setdefault("signin.services", {})
