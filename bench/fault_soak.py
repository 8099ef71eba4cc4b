"""Fault soak: mixed load on ``signin serve`` while its Redis is stopped, killed and filled; then every token checked.

    .venv/bin/python -m bench.fault_soak                 # both modes, 26 s of load in all (~40 s)
    .venv/bin/python -m bench.fault_soak --mode tcp --duration 60

Each mode starts its own Redis, SQLite file and ``signin serve`` (waitress,
``SIGNIN_STORE_TIMEOUT`` 0.5 s), one after the other (``--mode both``):

- ``embedded``: no ``REDIS_URL``; the service uses the embedded Redis of its
  instance folder (``signin.store.embedded``: a unix socket, an append-only file).
  Killed, it is brought back by the app itself.
- ``tcp``: a redis-server of ``tests/servers.py`` with ``--appendonly yes
  --appendfsync everysec``, which the soak starts again after killing it.

Client threads (``bench.soak``'s, each owning its users, so it alone knows
which of their tokens should be live) sign in, call me, introspect, refresh,
sign out and sign out everywhere, while a fault thread takes turns at:
SIGSTOP for 2 s; kill -9, then a restart (or the app's revival); maxmemory
just above the memory in use, with noeviction, for 2 s. After each it waits
for a probe (sign in, GET me, sign out) to be answered again.

What a client may believe of a token: a request answered 503 (with the
contract's body and Retry-After) or not answered at all leaves its token in
flight. A refresh in flight keeps its old pair, which the client sends again
once the fault has passed: it must then succeed, for the store undoes a
rotation whose answer was lost; a 401 is a lost session. A signout in flight
is sent again too, and its token must end up dead. A sign-in answered 503
did not happen.

At the end, as in ``bench.soak``, every live access token must answer me 200,
every live refresh token introspect active, and every ended token be
refused. Exits 1 on any 5xx but that 503 (so on any 500), a connection error
outside a fault, an unexpected status, a lost or undead token, a token still
in flight at the end, a fault that had no effect, or a service that did not
answer again after one.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.soak import (
    INTROSPECT,
    ME,
    REFRESH,
    SIGNIN,
    SIGNOUT,
    Client,
    Pair,
    Reply,
    Tally,
    is_unavailable,
    prepare,
    report,
    run_clients,
)
from signin.store import embedded
from tests.faults import filled, memory_in_use, stop_for
from tests.servers import RedisServer, SigninServe, http_call, wait_for

MODES = ("embedded", "tcp")
FAULTS = ("stall", "kill", "fill")
STORE_TIMEOUT = 0.5
# How long a stall and a fill last; how long a killed tcp Redis stays dead before the soak starts it again.
FAULT_SECONDS = 2.0
KILL_DOWN_SECONDS = 1.0
# Calm load before the first fault, and between a fault's end (the probe answered) and the next.
LEAD_SECONDS = 1.5
GAP_SECONDS = 1.0
# A fault must leave at least this long before the end of the load to be started.
FAULT_BUDGET = {"stall": FAULT_SECONDS + 1.0, "kill": KILL_DOWN_SECONDS + 2.0, "fill": FAULT_SECONDS + 1.0}
# Bytes of headroom the fill leaves above the memory in use: a few sessions.
FILL_HEADROOM = 4 * 1024
FILL_CHECK_INTERVAL = 0.1
PROBE_INTERVAL = 0.05
PROBE_TIMEOUT = 5.0
# How long the service may take to answer the probe again once a fault is lifted.
RECOVERY_TIMEOUT = 20.0
# How long, after the load, the tokens still in flight may take to be settled.
SETTLE_SECONDS = 15.0
REQUEST_TIMEOUT = 10.0
# A client that was not answered waits this long before its next request, and an in-flight one
# is sent again no sooner than Retry-After says (and only once the fault has passed).
PAUSE_AFTER_UNANSWERED = 0.05
RETRY_AFTER = 1.0
# An answer sent this close to a fault's window counts as the fault's (a request in flight as it began).
WINDOW_MARGIN = 1.0
# Weights of the next action a client takes while it holds a session.
ACTIONS = {
    "signin": 12,
    "me": 36,
    "introspect": 12,
    "refresh": 22,
    "signout": 8,
    "signout everywhere": 2,
    "me (dead)": 8,
}
FAILURES = (
    "5xx",
    "connection error",
    "unexpected status",
    "lost",
    "undead",
    "unsettled",
    "fault without effect",
    "no recovery",
    "server exited",
)
PROBE_USER = "probe"


@dataclass
class InFlight:
    """A refresh or signout that was not answered: its pair, since when, and when it may be sent again.

    A signout everywhere in flight puts every other pair of its user in doubt
    too (``others``): it may end them whenever Redis runs it.
    """

    kind: str
    pair: Pair
    since: float
    not_before: float
    others: list[Pair] = field(default_factory=list)


@dataclass
class Fault:
    """One fault: what, when it began, was lifted and was answered again, and what the probe saw meanwhile."""

    kind: str
    detail: str
    began: float
    lifted: float = 0.0
    answered: float | None = None
    probe: Counter[str] = field(default_factory=Counter)

    def covers(self, when: float) -> bool:
        """Tell whether a request sent at ``when`` falls in the fault's window (with a margin either side)."""
        end = self.answered if self.answered is not None else self.lifted + RECOVERY_TIMEOUT
        return self.began - WINDOW_MARGIN <= when <= end + WINDOW_MARGIN


def fault_of(when: float, faults: list[Fault]) -> Fault | None:
    """Return the fault a request sent at ``when`` belongs to: the last one begun by then, if it covers it."""
    begun = [fault for fault in faults if fault.began - WINDOW_MARGIN <= when]
    return begun[-1] if begun and begun[-1].covers(when) else None


class Target:
    """The Redis of one mode, as the fault thread reaches it."""

    mode = ""
    url = ""

    def pid(self) -> int:
        raise NotImplementedError

    def admin(self) -> redis.Redis:
        """Return a new client for CONFIG and INFO; the caller closes it."""
        raise NotImplementedError

    def kill(self) -> str:
        """SIGKILL the server and bring it back (or let the app do it); say how."""
        raise NotImplementedError

    def version(self) -> str:
        with self.admin() as client:
            return str(client.info("server")["redis_version"])


class TcpTarget(Target):
    """A redis-server of tests/servers.py keeping an append-only file, restarted by the soak after a kill."""

    mode = "tcp"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.url = server.url

    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def admin(self) -> redis.Redis:
        return self.server.client()

    def kill(self) -> str:
        self.server.kill()
        time.sleep(KILL_DOWN_SECONDS)
        self.server.start()  # the same port and directory: it loads its append-only file
        return f"kill -9, started again {KILL_DOWN_SECONDS:g} s later"


class EmbeddedTarget(Target):
    """The embedded Redis of an instance folder (signin.store.embedded), revived by signin serve after a kill."""

    mode = "embedded"

    def __init__(self, server: embedded.EmbeddedRedis) -> None:
        self.server = server
        self.url = server.url

    def pid(self) -> int:
        return int((self.server.directory / embedded.PIDFILE).read_text().strip())

    def admin(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.server.socket), socket_timeout=2, decode_responses=True)

    def kill(self) -> str:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not embedded._alive(pid), 5.0, f"embedded redis-server {pid} gone after SIGKILL")
        return "kill -9, revived by the app"


@contextlib.contextmanager
def target_for(mode: str, workdir: Path) -> Iterator[Target]:
    """Start the Redis of ``mode`` for the block, and stop it however the block ends."""
    if mode == "tcp":
        with RedisServer(("--appendonly", "yes", "--appendfsync", "everysec")) as server:
            yield TcpTarget(server)
        return
    # Joined by this process too, so that the soak decides when it stops: once signin serve has left.
    server = embedded.join(workdir / "instance")
    try:
        yield EmbeddedTarget(server)
    finally:
        with contextlib.suppress(ProcessLookupError, OSError, ValueError):
            os.kill(EmbeddedTarget(server).pid(), signal.SIGCONT)  # never leave it stopped
        server.leave()


class Probe:
    """While a fault lasts, sign in, GET me and sign out as a user of its own, over and over; note what it saw."""

    def __init__(self, port: int, password: str) -> None:
        self.port, self.password = port, password
        self.fault: Fault | None = None
        self.answered = threading.Event()  # once a probe sent after the current fault's lift went through
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self.run, name="probe", daemon=True)

    def watch(self, fault: Fault) -> None:
        with self.lock:
            self.fault = fault
            self.answered.clear()
        self.wake.set()

    def once(self) -> str:
        """Sign in, GET me, sign out; return "ok" or what failed first."""
        try:
            status, body = http_call(
                self.port, "POST", SIGNIN, {"username": PROBE_USER, "password": self.password}, timeout=PROBE_TIMEOUT
            )
            if status != 200:
                return f"signin {status}"
            access = body["token"]["access_token"]
            status, _ = http_call(self.port, "GET", ME, token=access, timeout=PROBE_TIMEOUT)
            if status != 200:
                return f"me {status}"
            # Its answer matters not: an unended probe session only lingers.
            http_call(self.port, "POST", SIGNOUT, token=access, timeout=PROBE_TIMEOUT)
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__
        return "ok"

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                fault = self.fault
            if fault is None or self.answered.is_set():
                self.wake.wait(0.2)
                self.wake.clear()
                continue
            sent = time.monotonic()
            outcome = self.once()
            fault.probe[outcome] += 1
            if outcome == "ok" and fault.lifted and sent >= fault.lifted:
                fault.answered = time.monotonic()
                self.answered.set()
            else:
                time.sleep(PROBE_INTERVAL)


class FaultThread:
    """Takes turns at the faults on one target until the load's deadline; records each."""

    def __init__(self, target: Target, probe: Probe, deadline: float, headroom: int) -> None:
        self.target, self.probe, self.deadline, self.headroom = target, probe, deadline, headroom
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        # Set while no fault is under way and the service has answered since the last one.
        self.calm = threading.Event()
        self.calm.set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name="faults", daemon=True)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported as a failure of the run
            self.errors.append(f"the fault thread failed: {type(exc).__name__}: {exc}")
        finally:
            self.calm.set()
            self.done.set()

    def _run(self) -> None:
        time.sleep(LEAD_SECONDS)
        turn = 0
        while time.monotonic() + FAULT_BUDGET[FAULTS[turn % len(FAULTS)]] < self.deadline:
            kind = FAULTS[turn % len(FAULTS)]
            turn += 1
            fault = Fault(kind, "", time.monotonic())
            self.calm.clear()
            self.faults.append(fault)
            self.probe.watch(fault)
            fault.detail = self.apply(kind)
            fault.lifted = time.monotonic()
            if not self.probe.answered.wait(RECOVERY_TIMEOUT):
                self.errors.append(f"{kind}: no answer {RECOVERY_TIMEOUT:g} s after the fault was lifted")
                return
            self.calm.set()
            time.sleep(GAP_SECONDS)

    def apply(self, kind: str) -> str:
        """Make one fault happen and end; return what it was."""
        if kind == "stall":
            stop_for(self.target.pid(), FAULT_SECONDS)
            return f"SIGSTOP for {FAULT_SECONDS:g} s, then SIGCONT"
        if kind == "kill":
            return self.target.kill()
        with self.target.admin() as admin, filled(admin, self.headroom) as cap:
            # Memory in use can fall (buffers freed, keys expired): the cap follows it down, to keep biting.
            lowest, ends = cap, time.monotonic() + FAULT_SECONDS
            while time.monotonic() < ends:
                time.sleep(FILL_CHECK_INTERVAL)
                if (now := memory_in_use(admin) + self.headroom) < lowest:
                    lowest = now
                    admin.config_set("maxmemory", lowest)
        lowered = f", lowered to {lowest:,} B as memory in use fell" if lowest < cap else ""
        return (
            f"maxmemory {cap:,} B (in use + {self.headroom // 1024} KiB{lowered}), noeviction, for {FAULT_SECONDS:g} s"
        )


class FaultClient(Client):
    """A bench.soak client that keeps unanswered refreshes and signouts in flight, to send again after the fault."""

    def __init__(
        self, port: int, users: list[str], password: str, service: str, seed: int, calm: threading.Event
    ) -> None:
        super().__init__(port, users, password, service, seed)
        self.conn.timeout = REQUEST_TIMEOUT
        self.calm = calm
        self.live: list[Pair] = []
        self.pending: list[InFlight] = []
        # (when sent, action, status: 503 or 0 for no answer, what went wrong)
        self.unanswered: list[tuple[float, str, int, str]] = []
        # (in flight since, kind, the status its retry got at last)
        self.settled: list[tuple[float, str, int]] = []
        # Once the load is over, an unanswered request is a failure.
        self.strict = False

    def _send(self, action: str, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> Reply:
        sent, began = time.monotonic(), time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()  # http.client reconnects on the next request
            self.tally.statuses[(action, "no answer")] += 1
            return self._unanswered(sent, action, 0, f"{type(exc).__name__}: {exc}")
        self.tally.latencies.append(time.perf_counter() - began)
        status = response.status
        self.tally.statuses[(action, str(status))] += 1
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        try:
            body = json.loads(raw) if raw and is_json else None
        except ValueError:
            body = None
        if is_unavailable(status, body, response.getheader("Retry-After")):
            return self._unanswered(sent, action, status, "")
        if status >= 500:
            self.tally.fail("5xx", f"{action}: {status} {raw[:200]!r}")
        return status, body

    def _unanswered(self, sent: float, action: str, status: int, what: str) -> Reply:
        if self.strict:
            self.tally.fail("5xx" if status else "connection error", f"{action} after the load: {status or what}")
        self.unanswered.append((sent, action, status, what))
        time.sleep(PAUSE_AFTER_UNANSWERED)
        return status, None

    @staticmethod
    def in_flight(status: int) -> bool:
        return status in (0, 503)

    def hold(self, kind: str, pair: Pair) -> None:
        """Keep an unanswered refresh or signout aside, to be sent again after the fault."""
        now = time.monotonic()
        item = InFlight(kind, pair, now, now + RETRY_AFTER)
        if kind == "signout everywhere":
            # Until it is answered, none of the user's pairs is used, and the user does not sign in.
            item.others = [p for p in self.live if p.username == pair.username]
            for other in [i for i in self.pending if i.pair.username == pair.username]:
                self.pending.remove(other)
                item.others += [other.pair, *other.others]
            self.live = [p for p in self.live if p.username != pair.username]
        self.pending.append(item)

    def _ended(self, item: InFlight) -> None:
        """End a pair, and what its signout everywhere put in doubt."""
        for pair in (item.pair, *item.others):
            self._end(pair)

    def _take(self) -> Pair:
        return self.live.pop(self.rng.randrange(len(self.live)))

    def _ended_everywhere(self, username: str) -> None:
        """End the user's other pairs, and their tokens in flight (whose retries would now be refused)."""
        for other in [p for p in self.live if p.username == username]:
            self.live.remove(other)
            self._end(other)
        for item in [i for i in self.pending if i.pair.username == username]:
            self.pending.remove(item)
            self._ended(item)

    def signin(self) -> None:
        doubtful = {item.pair.username for item in self.pending if item.kind == "signout everywhere"}
        users = [user for user in self.users if user not in doubtful]
        if not users:
            return
        username = self.rng.choice(users)
        status, body = self.call("signin", "POST", SIGNIN, {"username": username, "password": self.password})
        if self.in_flight(status):
            return  # it did not happen
        if self.expect("signin", status, 200, "unexpected status", username):
            token = body["token"]
            self.live.append(Pair(username, token["access_token"], token["refresh_token"]))

    def me(self) -> None:
        pair = self.rng.choice(self.live)
        status, body = self.call("me", "GET", ME, token=pair.access)
        if self.in_flight(status):
            return
        live = self.expect("me", status, 200, "lost", f"a live access token of {pair.username}")
        if live and body["username"] != pair.username:
            self.tally.fail("lost", f"me: {pair.username}'s token answered as {body['username']}")

    def introspect(self, action: str = "introspect", pair: Pair | None = None, token: str | None = None) -> None:
        pair = pair or self.rng.choice(self.live)
        token = token or self.rng.choice((pair.access, pair.refresh))
        # A refresh token is active to introspection only when hinted as one (API.md, introspection).
        hint = "&token_type_hint=refresh_token" if token == pair.refresh else ""
        data = f"token={token}{hint}".encode()
        headers = {"Authorization": self.service, "Content-Type": "application/x-www-form-urlencoded"}
        status, body = self._send(action, "POST", INTROSPECT, data, headers)
        if self.in_flight(status) and not self.strict:
            return
        if self.expect(action, status, 200, "unexpected status", "a live token") and body.get("active") is not True:
            self.tally.fail("lost", f"{action}: a live token of {pair.username} is inactive")

    def refresh(self) -> None:
        pair = self._take()
        status, body = self.call("refresh", "POST", REFRESH, {"refresh_token": pair.refresh})
        if self.in_flight(status):
            self.hold("refresh", pair)  # the old pair is kept, to be sent again after the fault
        elif self.expect("refresh", status, 200, "lost", f"a live refresh token of {pair.username}"):
            self._rotated(pair, body)

    def _rotated(self, pair: Pair, body: dict) -> None:
        self._end(pair)
        token = body["token"]
        self.live.append(Pair(pair.username, token["access_token"], token["refresh_token"]))

    def signout(self, everywhere: bool = False) -> None:
        pair = self._take()
        action = "signout everywhere" if everywhere else "signout"
        status, _ = self.call(action, "POST", SIGNOUT, {"everywhere": True} if everywhere else None, pair.access)
        if self.in_flight(status):
            self.hold(action, pair)
        elif self.expect(action, status, 204, "lost", f"a live access token of {pair.username}"):
            self._end(pair)
            if everywhere:
                self._ended_everywhere(pair.username)

    def me_dead(self) -> None:
        if self.dead_access:
            status, _ = self.call("me (dead)", "GET", ME, token=self.rng.choice(self.dead_access))
            if not self.in_flight(status):
                self.expect("me (dead)", status, 401, "undead", "an ended access token")

    def due(self) -> InFlight | None:
        """Return the oldest token in flight that may be sent again now, if the fault has passed."""
        if self.pending and self.calm.is_set() and time.monotonic() >= self.pending[0].not_before:
            return self.pending.pop(0)
        return None

    def retry(self, item: InFlight) -> None:
        """Send an unanswered refresh or signout again; its outcome must be what the contract promises."""
        action, pair = f"retry {item.kind}", item.pair
        if item.kind == "refresh":
            status, body = self.call(action, "POST", REFRESH, {"refresh_token": pair.refresh})
        else:
            everywhere = {"everywhere": True} if item.kind == "signout everywhere" else None
            status, body = self.call(action, "POST", SIGNOUT, everywhere, pair.access)
        if self.in_flight(status):
            item.not_before = time.monotonic() + RETRY_AFTER
            self.pending.append(item)
            return
        self.settled.append((item.since, item.kind, status))
        if item.kind == "refresh":
            if status == 200:
                self._rotated(pair, body)
            elif status == 401:
                self._lost_refresh(item)
            else:
                self.tally.fail("unexpected status", f"{action}: {status} for a refresh token in flight")
        elif status in (204, 401):
            # 401: the first one ended the session after all, so the bearer is dead
            # (and, for everywhere, every other session the user had then).
            self._ended(item)
        else:
            self.tally.fail("unexpected status", f"{action}: {status} for a signout in flight")

    def _lost_refresh(self, item: InFlight) -> None:
        """File a retried refresh answered 401: the session is lost (a client takes it as "sign in again")."""
        waited = time.monotonic() - item.since
        self.tally.fail("lost", f"retry refresh: 401 for a refresh token in flight for {waited:.1f} s")

    def step(self) -> None:
        """Send a token in flight again if it is due, else take one action, chosen at random by weight."""
        item = self.due()
        if item is not None:
            self.retry(item)
            return
        if not self.live:
            self.signin()
            return
        action = self.rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        if action == "signin" and len(self.live) >= 8:
            action = "me"
        steps: dict[str, Callable[[], None]] = {
            "signin": self.signin,
            "me": self.me,
            "introspect": self.introspect,
            "refresh": self.refresh,
            "signout": self.signout,
            "signout everywhere": lambda: self.signout(everywhere=True),
            "me (dead)": self.me_dead,
        }
        steps[action]()

    def settle(self, deadline: float) -> None:
        """Send every token still in flight again until each is answered, or the deadline passes."""
        while self.pending and time.monotonic() < deadline:
            wait = self.pending[0].not_before - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
                continue
            self.retry(self.pending.pop(0))
        for item in self.pending:
            self.tally.fail("unsettled", f"{item.kind} in flight since the fault, never answered after it")

    def final_check(self) -> None:
        self.strict = True
        super().final_check()


def summarize_faults(mode: str, started: float, faults: list[Fault], clients: list[FaultClient], tally: Tally) -> None:
    """Print, per fault, the 503s and unanswered requests it caused, how soon it was answered, how its tokens fared."""
    unanswered = [entry for client in clients for entry in client.unanswered]
    settled = [entry for client in clients for entry in client.settled]
    print(f"faults ({mode}):")
    for n, fault in enumerate(faults, 1):
        mine = [(action, status) for when, action, status, _ in unanswered if fault_of(when, faults) is fault]
        refused = Counter(action for action, status in mine if status == 503)
        silent = sum(status == 0 for _, status in mine)
        answered = (
            f"answered again {fault.answered - fault.lifted:.2f} s after it was lifted "
            f"({fault.answered - fault.began:.2f} s after it began)"
            if fault.answered is not None
            else "NOT ANSWERED AGAIN"
        )
        by_action = ", ".join(f"{action} {count}" for action, count in refused.most_common())
        print(f"  {n}. {fault.kind}: {fault.detail}, at +{fault.began - started:.1f} s")
        print(f"     {sum(refused.values())} answered 503 ({by_action or 'none'}), {silent} unanswered; {answered}")
        probe = ", ".join(f"{outcome} {count}" for outcome, count in fault.probe.most_common())
        retried = Counter((kind, status) for since, kind, status in settled if fault_of(since, faults) is fault)
        outcomes = ", ".join(f"{kind} {status}: {count}" for (kind, status), count in sorted(retried.items()))
        print(f"     probe: {probe or 'nothing'}; in flight, sent again: {outcomes or 'none'}")
        if not mine and not any(outcome != "ok" for outcome in fault.probe):
            tally.fail("fault without effect", f"{mode} {fault.kind}: not one request was refused")
    outside = [(action, status, what) for when, action, status, what in unanswered if fault_of(when, faults) is None]
    for action, status, what in outside:
        if status == 0:
            tally.fail("connection error", f"{action}, outside any fault: {what}")
    calm = Counter(action for action, status, _ in outside if status)
    if calm:
        print("  the contract's 503 outside any fault: " + ", ".join(f"{a} {n}" for a, n in calm.most_common()))


def server_log(path: Path) -> Counter[str]:
    """Count the service's own log lines (not its audit lines), numbers blurred, for the summary."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return Counter(re.sub(r"\d+", "N", line)[:160] for line in lines if line and not line.startswith('{"time":'))


def run_mode(mode: str, args: argparse.Namespace, workdir: Path, tally: Tally) -> None:
    """Soak one mode: its Redis, signin serve, the clients and the faults; add what it saw to ``tally``."""
    workdir.mkdir()
    password = secrets.token_urlsafe(18)
    usernames = [f"soak{n}" for n in range(args.users)]
    database_url = f"sqlite:///{workdir / 'signin.db'}"
    with target_for(mode, workdir) as target:
        service = prepare(database_url, target.url, args.password_method, [*usernames, PROBE_USER], password)
        env = dict(
            os.environ,
            DATABASE_URL=database_url,
            RATELIMIT_ENABLED="false",
            SIGNIN_PASSWORD_METHOD=args.password_method,
            SIGNIN_STORE_TIMEOUT=str(STORE_TIMEOUT),
            SIGNIN_SESSION_TOUCH_SECONDS=str(args.touch_seconds),
            PYTHONUNBUFFERED="1",
        )
        if mode == "tcp":
            env["REDIS_URL"] = target.url
        else:
            env.pop("REDIS_URL", None)
            env["SIGNIN_INSTANCE_PATH"] = str(workdir / "instance")
        with SigninServe(env, threads=args.server_threads) as server:
            print(
                f"== {mode}: {args.clients} clients for {args.seconds} s on signin serve ({args.server_threads} "
                f"threads, store timeout {STORE_TIMEOUT:g} s), redis {target.version()} at {target.url}, "
                f"append-only file (everysec), {args.users} users"
            )
            deadline = time.monotonic() + args.seconds
            probe = Probe(server.port, password)
            faults = FaultThread(target, probe, deadline, FILL_HEADROOM)
            clients = [
                FaultClient(server.port, usernames[n :: args.clients], password, service, args.seed + n, faults.calm)
                for n in range(args.clients)
            ]
            probe.thread.start()
            faults.thread.start()

            def load(client: FaultClient) -> None:
                while time.monotonic() < deadline:
                    client.step()

            seconds = run_clients(clients, load)
            faults.done.wait(RECOVERY_TIMEOUT + FAULT_SECONDS + KILL_DOWN_SECONDS + 5)
            probe.stop.set()
            probe.wake.set()
            settle_deadline = time.monotonic() + SETTLE_SECONDS
            run_clients(clients, lambda client: client.settle(settle_deadline))
            load_tally = Tally()
            for client in clients:
                load_tally.merge(client.tally)
                client.tally = Tally()
            report("load (with the retries of tokens in flight)", load_tally, seconds)
            summarize_faults(mode, deadline - args.seconds, faults.faults, clients, load_tally)
            for error in faults.errors:
                load_tally.fail("no recovery", error)
            live = sum(len(c.live) for c in clients)
            ended = sum(len(c.dead_access) + len(c.dead_refresh) for c in clients)
            seconds = run_clients(clients, FaultClient.final_check)
            check = Tally()
            for client in clients:
                check.merge(client.tally)
            report(f"final check of {2 * live} live and {ended} ended tokens", check, seconds)
            load_tally.merge(check)
            if not server.running:
                load_tally.fail("server exited", f"signin serve exited with {server.process.returncode}")
            logged = server_log(server.log_path)
        tally.merge(load_tally)
    print("signin serve's log (numbers blurred): " + ("nothing" if not logged else ""))
    for line, count in logged.most_common(8):
        print(f"  {count:>5} x {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like an exception, so every server is still stopped (and none left stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="signin-fault-soak-") as workdir:
        for mode in args.modes:
            run_mode(mode, args, Path(workdir) / mode, tally)
    print("failures: " + ", ".join(f"{kind} {tally.failures[kind]}" for kind in FAILURES))
    for example in tally.examples:
        print(f"  {example}")
    if any(tally.failures[kind] for kind in FAILURES):
        print("FAILED")
        return 1
    print("OK: no 500, no 5xx but the contract's 503, no lost, undead or unsettled token, every fault answered again")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_soak", description=__doc__.partition("\n")[0])
    parser.add_argument("--duration", type=int, default=26, help="seconds of load in all, shared by the modes")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both", help="which Redis (default: both)")
    parser.add_argument("--clients", type=int, default=24, help="concurrent client threads (default: 24)")
    parser.add_argument("--users", type=int, default=120, help="users made before each mode (default: 120)")
    parser.add_argument("--server-threads", type=int, default=8, help="waitress threads (default: 8)")
    parser.add_argument(
        "--touch-seconds",
        type=int,
        default=1,
        help="SIGNIN_SESSION_TOUCH_SECONDS (default: 1, so that token checks write during the faults too)",
    )
    parser.add_argument(
        "--password-method", default="pbkdf2:sha256:1000", help="SIGNIN_PASSWORD_METHOD (default: pbkdf2:sha256:1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' random choices (default: 0)")
    args = parser.parse_args(argv)
    args.modes = MODES if args.mode == "both" else (args.mode,)
    args.seconds = args.duration // len(args.modes)
    least = int(LEAD_SECONDS + sum(FAULT_BUDGET.values()) + (len(FAULTS) - 1) * GAP_SECONDS) + 1
    if args.seconds < least:
        parser.error(f"--duration must leave at least {least} s to each mode, for one of each fault")
    if not 1 <= args.clients <= args.users:
        parser.error("--clients must be at least 1 and at most --users, so that every client owns a user")
    return args


if __name__ == "__main__":
    sys.exit(main())
