"""Undo rotations whose answer never reached the client, so that its refresh token works again.

A refresh whose ``EVAL`` Redis ran but whose reply was lost (a timeout, a
dropped connection), or whose second write Redis refused, has spent the
client's refresh token for a pair nobody will see. ``LostRotations`` undoes
it (``UNDO_ROTATION``): at once if it can, else in the background until Redis
answers; and a retry of the same token in this process runs the undo first,
so the retry succeeds whichever reaches Redis first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

import redis.exceptions

from signin.store.breaker import unguarded
from signin.store.tokens.records import RAW, Session
from signin.store.tokens.scripts import UNDO_ROTATION

if TYPE_CHECKING:
    from signin.store.tokens.store import TokenStore

log = logging.getLogger(__name__)

# How long a lost rotation's undo keeps trying to reach Redis, and how often.
UNDO_PATIENCE = 60.0
UNDO_INTERVAL = 0.5

# (ref, presented refresh digest, new refresh digest): one rotation to undo.
Pending = tuple[str, str, str]


class LostRotations:
    """The rotations of one token store whose answer was lost, and their undos."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        # Each with when to forget it: kept until done, and a while after (see ``later``).
        self._pending: dict[Pending, float] = {}
        self._lock = threading.Lock()

    def undo(self, ref: str, presented: str, refresh: str) -> None:
        """Undo a rotation whose answer was lost (see ``UNDO_ROTATION``), and index the session as it is left.

        The rotation may have made the session's key outlive its index entry,
        whose move was never sent: the entry moves (or comes back) with it.
        """
        store = self.store
        undone = store.redis.execute_command(
            "EVAL", UNDO_ROTATION, 1, store.session_key(ref), presented, refresh, **RAW
        )
        if undone:
            with store.redis.pipeline(transaction=False) as pipe:
                store.reindex(pipe, Session.load(ref, undone), restore=True)
                pipe.execute()

    def later(self, ref: str, presented: str, refresh: str) -> None:
        """Undo, in the background, a rotation whose answer was lost (``undo``).

        Sent at once, past the breaker: unanswered, it still waits in Redis's
        socket and runs when Redis wakes. Until it is known done, and for
        UNDO_PATIENCE after (a retry whose rotation met the spent token just
        before it), a retry of the same token in this process does it first
        (``undone_now``).
        """
        pending = (ref, presented, refresh)
        with self._lock:
            now = time.monotonic()
            self._pending = {undo: kept for undo, kept in self._pending.items() if kept > now}
            self._pending[pending] = math.inf

        def undo() -> None:
            deadline = time.monotonic() + UNDO_PATIENCE
            while pending in self._pending:
                try:
                    with unguarded():
                        self.undo(*pending)
                except redis.exceptions.RedisError:
                    # Sent but unanswered still lands once Redis wakes, a refusal (full, read-only) passes;
                    # sending again is harmless.
                    if time.monotonic() >= deadline:
                        log.warning("a lost rotation could not be undone: its refresh token stays spent")
                        return
                    time.sleep(UNDO_INTERVAL)
                    continue
                with self._lock:
                    if pending in self._pending:
                        self._pending[pending] = time.monotonic() + UNDO_PATIENCE
                return

        threading.Thread(target=undo, name="signin-undo-rotation", daemon=True).start()

    def undone_now(self, ref: str, presented: str) -> bool:
        """Undo the lost rotations of ``presented`` this process knows of, now; tell whether there were any.

        One done already is done again, harmlessly; one that cannot be done stays for its next retry.
        """
        with self._lock:
            undos = [pending for pending in self._pending if pending[:2] == (ref, presented)]
        for pending in undos:
            self.undo(*pending)
            with self._lock:
                self._pending.pop(pending, None)
        return bool(undos)
