"""Internal services: register them, and check the credentials they present."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from signin.extensions import db
from signin.models import Service

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
    return secret


def remove_service(name: str) -> bool:
    """Forget a service; tell whether it existed."""
    service = db.session.scalar(db.select(Service).filter_by(name=name))
    if service is None:
        return False
    db.session.delete(service)
    db.session.commit()
    return True


def list_services() -> list[Service]:
    """Return every registered service, oldest first."""
    return list(db.session.scalars(db.select(Service).order_by(Service.id)))


def verify_service(name: str, secret: str) -> bool:
    """Tell whether a name and secret belong to a registered service, in constant time."""
    stored = db.session.scalar(db.select(Service.secret_digest).filter_by(name=name))
    matches = hmac.compare_digest(_digest(secret), stored or _NO_DIGEST)
    return matches and stored is not None
