"""A store that did not answer in time is given a rest: calls fail at once, one at a time tries again.

Without it, a hung Redis or database (stopped, swapping, a SQLite file
locked) would hold every server thread for ``SIGNIN_STORE_TIMEOUT`` per
request, and requests that need no store, ``/healthz`` among them, would
queue behind them. With it, once a call has timed out, calls fail at once
(a 503) for the next timeout's length; then a single call at a time tries
the store, while the others still fail at once, until one succeeds. So at
most one thread per store waits on a hung store.

``FailFastRetry`` puts a breaker in redis-py's path (every command and
pipeline goes through its client's ``Retry``); ``signin.store.database`` puts one in
SQLAlchemy's, through its events.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis.exceptions
from redis.backoff import AbstractBackoff
from redis.retry import Retry

T = TypeVar("T")


class Resting(Exception):
    """The store is resting after a timeout: the call was not made."""


class RedisResting(redis.exceptions.TimeoutError):
    """Redis is resting after a timeout: the command was not sent (a 503 like any timeout, but nothing to undo)."""


_unguarded = threading.local()


@contextlib.contextmanager
def unguarded() -> Iterator[None]:
    """Let this thread's calls through a resting breaker: for a write that must reach the store the moment it answers.

    The undo of a lost rotation is one: sent at once, it waits in the store's
    socket and runs when the store wakes, before any client's retry.
    """
    _unguarded.on = True
    try:
        yield
    finally:
        _unguarded.on = False


class Breaker:
    """After a timeout, refuse calls for ``rest`` seconds, then let one at a time try until one succeeds."""

    def __init__(self, rest: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rest = rest
        self.clock = clock
        self._lock = threading.Lock()
        self._resting_until = 0.0
        self._troubled = False  # since the last timeout, no call has succeeded
        self._trying = False  # a call is trying the store meanwhile

    def enter(self) -> bool:
        """Return whether a call may go ahead (and is the one trying); raise ``Resting`` if not."""
        if not self._troubled or getattr(_unguarded, "on", False):
            return False
        with self._lock:
            if not self._troubled:
                return False
            if self.clock() < self._resting_until or self._trying:
                raise Resting()
            self._trying = True
            return True

    def succeeded(self, trying: bool) -> None:
        if trying or self._troubled:
            with self._lock:
                self._troubled = self._trying = False

    def timed_out(self, trying: bool) -> None:
        with self._lock:
            self._troubled = True
            self._resting_until = self.clock() + self.rest
            if trying:
                self._trying = False

    def left(self, trying: bool) -> None:
        """A trying call ended without telling (another error): let the next one try."""
        if trying:
            with self._lock:
                self._trying = False


class FailFastRetry(Retry):
    """redis-py's retry of dropped connections, through a breaker that rests Redis after a timeout."""

    def __init__(self, backoff: AbstractBackoff, retries: int, breaker: Breaker) -> None:
        super().__init__(backoff, retries, (redis.exceptions.ConnectionError,))
        self.breaker = breaker

    def __deepcopy__(self, memo: dict[int, Any]) -> FailFastRetry:
        # redis-py copies its retry into every connection: the copies share the one breaker.
        return FailFastRetry(copy.deepcopy(self._backoff, memo), self._retries, self.breaker)

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], *args: Any, **kwargs: Any) -> T:
        try:
            trying = self.breaker.enter()
        except Resting:
            raise RedisResting("Redis timed out lately: resting it") from None
        try:
            result = super().call_with_retry(do, fail, *args, **kwargs)
        except redis.exceptions.TimeoutError:
            self.breaker.timed_out(trying)
            raise
        except BaseException:
            self.breaker.left(trying)
            raise
        self.breaker.succeeded(trying)
        return result
