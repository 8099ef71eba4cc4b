"""Which exceptions mean a store is out of reach (a 503, a one-line refusal), not that the code is wrong."""

from __future__ import annotations

import re

import redis.exceptions
import sqlalchemy.exc


class NotReplicated(Exception):
    """Fewer replicas than required acknowledged a write in time; nothing was handed out."""


REDIS_OUTAGES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.OutOfMemoryError,  # at maxmemory with noeviction: reads work, writes are refused
    NotReplicated,
)
# Redis's error codes for writes it refuses for now, as it begins its error or, in a script's error, after "-".
REFUSAL = re.compile(r"(?:^|[\s:]-?)(?:OOM|MISCONF|NOREPLICAS|READONLY|BUSY|LOADING|MASTERDOWN) ")
DATABASE_OUTAGES = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
)
