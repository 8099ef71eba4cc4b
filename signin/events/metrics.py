"""Prometheus metrics: events, store outages and request latency, in a registry per app.

``signin.web.metrics`` serves them at ``GET /metrics`` and times requests.

Every label value is a name fixed in the code (an outcome, a limit, a store, a
Flask endpoint), never a username, token or address, so a scrape holds no
personal data and the number of series stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, has_app_context
from prometheus_client import CollectorRegistry, Counter, Histogram

from signin.events.names import REFRESH_FAILURES, SIGNIN_FAILURES, Event, Happened, Outcome

EXTENSION = "signin.metrics"
NAMESPACE = "signin"

# Made at zero, so a rate over them is defined before the first event.
SIGNIN_OUTCOMES = (Outcome.SUCCESS, Event.MFA_REQUIRED, *SIGNIN_FAILURES)
REFRESH_OUTCOMES = (Outcome.SUCCESS, *REFRESH_FAILURES)
# The revocations a user, a service or the cap asks for, by the event that audits them.
REVOCATION_KINDS = {
    Event.SIGNOUT: "signout",
    Event.REVOKE: "service",
    Event.SESSION_ENDED: "session",
    Event.SESSIONS_ENDED: "other_sessions",
    Event.PASSWORD_CHANGED: "password_changed",
    Event.SESSION_EVICTED: "evicted",
}
STORES = ("redis", "database")


@dataclass
class Metrics:
    """One app's collectors, in a registry of its own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # labels() validates and locks on every call; a request needs only a lookup.
    _children: dict[tuple[object, tuple[str, ...]], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        self.signins = counter("signins", "Sign-in attempts, by outcome.", "outcome")
        self.refreshes = counter("refreshes", "Refresh attempts, by outcome.", "outcome")
        self.refresh_reuse = counter("refresh_reuse_detections", "Spent refresh tokens presented after the grace.")
        self.revocations = counter("revocations", "Sessions revoked on request, by kind.", "kind")
        self.throttled = counter("throttled", "Requests refused by a rate limit, by limit.", "limit")
        self.store_errors = counter("store_errors", "Requests answered 503 because a store was out of reach.", "store")
        self.busy = counter("hashing_busy", "Requests answered 503 because every password check slot was taken.")
        self.rehashes = counter(
            "password_rehashes", "Hashes moved to the configured method at sign-in, by their format.", "from_format"
        )
        self.latency = Histogram(
            "request_duration_seconds",
            "Time to answer a request, by Flask endpoint and status class.",
            ("endpoint", "status"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        for counted, values in (
            (self.signins, SIGNIN_OUTCOMES),
            (self.refreshes, REFRESH_OUTCOMES),
            (self.revocations, (*REVOCATION_KINDS.values(), "everywhere")),
            (self.store_errors, STORES),
        ):
            for value in values:
                counted.labels(value)

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """Return a metric's child for these label values (every value is a name fixed in the code)."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[metric, labels] = metric.labels(*labels)
        return child


def _metrics() -> Metrics | None:
    # Audit lines are also written by CLI commands, whose app may have none.
    return current_app.extensions.get(EXTENSION) if has_app_context() else None


def count_event(happened: Happened) -> None:
    """Count one event."""
    metrics = _metrics()
    if metrics is None:
        return
    event, outcome, reason, details = happened.event, happened.outcome, happened.reason, happened.details
    if event in (Event.SIGNIN, Event.MFA_REQUIRED):
        metrics.child(metrics.signins, reason or event if outcome != Outcome.SUCCESS else outcome).inc()
    elif event in (Event.REFRESH, Event.REFRESH_REUSE):
        metrics.child(metrics.refreshes, reason or outcome).inc()
        if event == Event.REFRESH_REUSE:
            metrics.refresh_reuse.inc()
    elif event in REVOCATION_KINDS and outcome == Outcome.SUCCESS:
        kind = "everywhere" if details.get("everywhere") else REVOCATION_KINDS[event]
        metrics.child(metrics.revocations, kind).inc()
    elif event == Event.THROTTLED and reason:
        metrics.child(metrics.throttled, reason).inc()
    elif event == Event.PASSWORD_REHASHED:
        metrics.child(metrics.rehashes, str(details.get("from_format"))).inc()


def count_store_error(store: str) -> None:
    """Count a request refused because ``store`` (redis or database) was out of reach."""
    metrics = _metrics()
    if metrics is not None:
        metrics.child(metrics.store_errors, store).inc()


def count_busy() -> None:
    """Count a request refused because every password check slot (and every place to wait) was taken."""
    metrics = _metrics()
    if metrics is not None:
        metrics.busy.inc()


def init_app(app: Flask) -> Metrics:
    """Give the app its own registry (tests build many apps in one process); return it."""
    app.extensions[EXTENSION] = Metrics()
    return app.extensions[EXTENSION]
