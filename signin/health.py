"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from signin.errors import DATABASE_OUTAGES, REDIS_OUTAGES
from signin.extensions import db, redis_client

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict:
    """Answer while the process serves."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Answer 200 when the database and Redis both answer, else 503 naming the failure."""
    checks = {"database": "ok", "redis": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except DATABASE_OUTAGES:
        checks["database"] = "unavailable"
    try:
        redis_client.client.ping()
    except REDIS_OUTAGES:
        checks["redis"] = "unavailable"
    failed = [name for name, state in checks.items() if state != "ok"]
    if not failed:
        return {"status": "ok", "checks": checks}
    body = {
        "error": "temporarily_unavailable",
        "error_description": f"Not ready: {' and '.join(failed)} cannot be reached.",
        "checks": checks,
    }
    return jsonify(body), 503
