"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, Response
from marshmallow import Schema, fields, validate
from redis.exceptions import RedisClusterException

from signin.store import schema
from signin.store.outages import DATABASE_OUTAGES, REDIS_OUTAGES
from signin.store.redis_client import redis_client
from signin.web.errors import ErrorSchema, TemporarilyUnavailable, error_response

bp = Blueprint("health", __name__)

STATES = ("ok", "unavailable", schema.NOT_INITIALISED, schema.BEHIND, schema.AHEAD)


class HealthSchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(["ok"]),
        metadata={"description": "`ok`: the process serves.", "example": "ok"},
    )


class ChecksSchema(Schema):
    database = fields.String(
        required=True,
        validate=validate.OneOf(STATES),
        metadata={
            "description": "Whether the database answered, at this signin's schema: `not_initialised` (run "
            "`signin init-db`), `schema_behind` (run `signin db upgrade`), `schema_ahead` (a newer signin upgraded "
            "it).",
            "example": "ok",
        },
    )
    redis = fields.String(
        required=True,
        validate=validate.OneOf(STATES),
        metadata={"description": "Whether Redis answered.", "example": "ok"},
    )


class ReadinessSchema(HealthSchema):
    checks = fields.Nested(
        ChecksSchema, required=True, metadata={"description": "Each store, and whether it answered."}
    )


class NotReadySchema(ErrorSchema):
    checks = fields.Nested(
        ChecksSchema, required=True, metadata={"description": "Each store, and whether it answered."}
    )


@bp.get("/healthz")
def healthz() -> dict:
    """Answer while the process serves."""
    return HealthSchema().dump({"status": "ok"})


@bp.get("/readyz")
def readyz() -> dict | Response:
    """Answer 200 when the database and Redis both answer, else 503 naming the failure."""
    checks = {"database": "ok", "redis": "ok"}
    database = None
    try:
        database = schema.standing()
        checks["database"] = database.state
    except DATABASE_OUTAGES:
        checks["database"] = "unavailable"
    try:
        redis_client.client.ping()
    except (*REDIS_OUTAGES, RedisClusterException):  # the latter: no cluster node answers
        checks["redis"] = "unavailable"
    if all(state == "ok" for state in checks.values()):
        return ReadinessSchema().dump({"status": "ok", "checks": checks})
    unreachable = [name for name, state in checks.items() if state == "unavailable"]
    reasons = [f"{' and '.join(unreachable)} cannot be reached"] if unreachable else []
    if database is not None and database.state != schema.OK:
        reasons.append(database.message())
    description = f"Not ready: {'; '.join(reasons)}."
    return error_response(TemporarilyUnavailable(description, details={"checks": checks}))

