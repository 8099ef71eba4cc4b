"""Soak: a bounded mixed load on a real ``signin serve``, then a check that no token was lost or outlived its end.

    .venv/bin/python -m bench.soak --duration 60

Starts its own redis-server and ``signin serve`` (waitress) on free loopback
ports, with SQLite in a temporary directory, and makes the users and an
introspection service in-process. Each client thread owns a keep-alive
connection and its own users, so it alone knows which of their tokens should
be live: every token it was given and has not ended, and which are dead:
every token it signed out or that a refresh rotated away. At the end every
live access token must answer GET me with 200 and every live refresh token
must introspect as active; every dead access token must answer 401 and every
dead refresh token must be refused. Exits 1 on any 5xx (but a sign-in shed
with the contract's 503, for the service bounds its password checks: it did
not happen), connection error, unexpected status, lost or undead token.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import percentile
from bench.servers import HOST, VENV_BIN, free_port, http_answers, redis_server, spawn, wait_until

SIGNIN = "/api/v2/account/signin/"
REFRESH = "/api/v2/account/refresh/"
SIGNOUT = "/api/v2/account/signout/"
ME = "/api/v2/account/me/"
INTROSPECT = "/api/v2/account/introspect/"

MAX_DURATION = 3600
REQUEST_TIMEOUT = 30.0
# A client signs in again only while it holds fewer sessions than this.
LIVE_PER_CLIENT = 8
# Of each failure kind, only the first few are printed in full.
EXAMPLES = 5
# Weights of the next action a client takes while it holds a session.
ACTIONS = {"signin": 15, "me": 45, "refresh": 20, "signout": 10, "signout everywhere": 2, "me (dead)": 8}
FAILURES = ("5xx", "connection error", "unexpected status", "lost", "undead")

# A status and the JSON body, if the answer had one.
Reply = tuple[int, Any]


@dataclass
class Pair:
    """A token pair the run believes live, and whose it is."""

    username: str
    access: str
    refresh: str


@dataclass
class Tally:
    """What one client saw: statuses by action, latencies and failures."""

    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str, message: str) -> None:
        self.failures[kind] += 1
        if self.failures[kind] <= EXAMPLES:
            self.examples.append(f"{kind}: {message}")

    def merge(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.latencies.extend(other.latencies)
        self.failures.update(other.failures)
        self.examples.extend(other.examples)


def is_unavailable(status: int, body: Any, retry_after: str | None) -> bool:
    """Tell whether an answer is the contract's 503: temporarily_unavailable, one sentence, Retry-After."""
    return (
        status == 503
        and isinstance(body, dict)
        and set(body) == {"error", "error_description"}
        and body["error"] == "temporarily_unavailable"
        and isinstance(body["error_description"], str)
        and retry_after is not None
    )


class Client:
    """One keep-alive connection, the users it alone signs in as, and the tokens it holds or has ended."""

    def __init__(self, port: int, users: list[str], password: str, service: str, seed: int) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        self.users = users
        self.password = password
        self.service = service
        self.rng = random.Random(seed)
        self.live: list[Pair] = []
        self.dead_access: list[str] = []
        self.dead_refresh: list[str] = []
        self.tally = Tally()

    def call(self, action: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> Reply:
        """Send one request; return (status, JSON body), or (0, None) after a connection error."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return self._send(action, method, path, data, headers)

    def _send(self, action: str, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> Reply:
        began = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()  # http.client reconnects on the next request
            self.tally.statuses[(action, "conn error")] += 1
            self.tally.fail("connection error", f"{action}: {type(exc).__name__}: {exc}")
            return 0, None
        self.tally.latencies.append(time.perf_counter() - began)
        self.tally.statuses[(action, str(response.status))] += 1
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        body = json.loads(raw) if raw and is_json else None
        # The service bounds its password checks: a sign-in beyond them is shed with the contract's 503,
        # and simply did not happen. Any other 5xx is a failure.
        shed = action == "signin" and is_unavailable(response.status, body, response.getheader("Retry-After"))
        if response.status >= 500 and not shed:
            self.tally.fail("5xx", f"{action}: {response.status} {raw[:200]!r}")
        return response.status, body

    def expect(self, action: str, status: int, wanted: int, bad_kind: str, what: str) -> bool:
        """Tell whether a status is the wanted one; file anything else as a failure."""
        if status == wanted:
            return True
        if status == 0 or status >= 500:
            return False  # already filed by _send
        # Only the opposite answer says something of the token: 401 for a live one, 200 for a dead one.
        kind = bad_kind if status == (401 if wanted < 400 else 200) else "unexpected status"
        self.tally.fail(kind, f"{action}: {status} for {what}")
        return False

    def _take(self) -> Pair:
        return self.live.pop(self.rng.randrange(len(self.live)))

    def _end(self, pair: Pair) -> None:
        self.dead_access.append(pair.access)
        self.dead_refresh.append(pair.refresh)

    def signin(self) -> None:
        username = self.rng.choice(self.users)
        status, body = self.call("signin", "POST", SIGNIN, {"username": username, "password": self.password})
        if self.expect("signin", status, 200, "unexpected status", username):
            token = body["token"]
            self.live.append(Pair(username, token["access_token"], token["refresh_token"]))

    def me(self) -> None:
        pair = self.rng.choice(self.live)
        status, body = self.call("me", "GET", ME, token=pair.access)
        live = self.expect("me", status, 200, "lost", f"a live access token of {pair.username}")
        if live and body["username"] != pair.username:
            self.tally.fail("lost", f"me: {pair.username}'s token answered as {body['username']}")

    def refresh(self) -> None:
        pair = self._take()
        status, body = self.call("refresh", "POST", REFRESH, {"refresh_token": pair.refresh})
        # On any failure the pair's state is unknown, so it is no longer tracked.
        if self.expect("refresh", status, 200, "lost", f"a live refresh token of {pair.username}"):
            self._end(pair)
            token = body["token"]
            self.live.append(Pair(pair.username, token["access_token"], token["refresh_token"]))

    def signout(self, everywhere: bool = False) -> None:
        pair = self._take()
        action = "signout everywhere" if everywhere else "signout"
        status, _ = self.call(action, "POST", SIGNOUT, {"everywhere": True} if everywhere else None, pair.access)
        if self.expect(action, status, 204, "lost", f"a live access token of {pair.username}"):
            self._end(pair)
            if everywhere:
                for other in [p for p in self.live if p.username == pair.username]:
                    self.live.remove(other)
                    self._end(other)

    def me_dead(self) -> None:
        if self.dead_access:
            status, _ = self.call("me (dead)", "GET", ME, token=self.rng.choice(self.dead_access))
            self.expect("me (dead)", status, 401, "undead", "an ended access token")

    def step(self) -> None:
        """Take one action, chosen at random by weight."""
        if not self.live:
            self.signin()
            return
        action = self.rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        if action == "signin" and len(self.live) >= LIVE_PER_CLIENT:
            action = "me"
        steps: dict[str, Callable[[], None]] = {
            "signin": self.signin,
            "me": self.me,
            "refresh": self.refresh,
            "signout": self.signout,
            "signout everywhere": lambda: self.signout(everywhere=True),
            "me (dead)": self.me_dead,
        }
        steps[action]()

    def final_check(self) -> None:
        """Ask about every token this client holds or has ended.

        Live ones go first: presenting a spent refresh token may end its session.
        """
        for pair in self.live:
            status, _ = self.call("final: me (live)", "GET", ME, token=pair.access)
            self.expect("final: me (live)", status, 200, "lost", f"a live access token of {pair.username}")
        for pair in self.live:
            # A refresh token is active to introspection only when hinted as one (API.md, introspection).
            data = f"token={pair.refresh}&token_type_hint=refresh_token".encode()
            headers = {"Authorization": self.service, "Content-Type": "application/x-www-form-urlencoded"}
            status, body = self._send("final: introspect (live)", "POST", INTROSPECT, data, headers)
            answered = self.expect("final: introspect (live)", status, 200, "unexpected status", "a live refresh token")
            if answered and body.get("active") is not True:
                self.tally.fail("lost", f"introspect: a live refresh token of {pair.username} is inactive")
        for token in self.dead_access:
            status, _ = self.call("final: me (dead)", "GET", ME, token=token)
            self.expect("final: me (dead)", status, 401, "undead", "an ended access token")
        for token in self.dead_refresh:
            status, _ = self.call("final: refresh (dead)", "POST", REFRESH, {"refresh_token": token})
            self.expect("final: refresh (dead)", status, 401, "undead", "an ended refresh token")
        self.conn.close()


def run_clients(clients: list[Client], work: Callable[[Client], None]) -> float:
    """Run ``work`` on every client in its own thread; return the seconds it took."""
    # Daemons, so that an interrupted run does not wait for its clients.
    threads = [threading.Thread(target=work, args=(client,), daemon=True) for client in clients]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def prepare(database_url: str, redis_url: str, method: str, usernames: list[str], password: str) -> str:
    """Create the tables, the users and a service in-process; return the service's Authorization header."""
    from signin import create_app
    from signin.rules.services import add_service
    from signin.rules.users import create_user
    from signin.store import schema
    from signin.store.database import db

    schema.upgrade(database_url)
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url, "SIGNIN_PASSWORD_METHOD": method}
    )
    with app.app_context():
        for username in usernames:
            create_user(username, password)
        secret = add_service("soak")
        db.engine.dispose()
    return "Basic " + base64.b64encode(f"soak:{secret}".encode()).decode()


def report(title: str, tally: Tally, seconds: float) -> None:
    """Print requests by action and status, and the rate and latencies."""
    requests = sum(tally.statuses.values())
    ordered = sorted(tally.latencies)
    print(
        f"{title}: {requests} requests in {seconds:.1f} s ({requests / seconds:,.0f} req/s), "
        f"p50 {percentile(ordered, 50) * 1e3:.1f} ms, p99 {percentile(ordered, 99) * 1e3:.1f} ms"
    )
    for action in dict.fromkeys(action for action, _ in sorted(tally.statuses)):
        counts = ", ".join(f"{status}: {n}" for (a, status), n in sorted(tally.statuses.items()) if a == action)
        print(f"  {action:<26} {counts}")


def exercise(clients: list[Client], duration: int, budget: int) -> Tally:
    """Load until the deadline or each client's budget of steps, then check every token; return all it saw."""
    deadline = time.monotonic() + duration

    def load(client: Client) -> None:
        for _ in range(budget):
            if time.monotonic() >= deadline:
                return
            client.step()

    seconds = run_clients(clients, load)
    tally = Tally()
    for client in clients:
        tally.merge(client.tally)
        client.tally = Tally()
    report("load", tally, seconds)
    live = sum(len(c.live) for c in clients)
    ended = sum(len(c.dead_access) + len(c.dead_refresh) for c in clients)
    seconds = run_clients(clients, Client.final_check)
    check = Tally()
    for client in clients:
        check.merge(client.tally)
    report(f"final check of {2 * live} live and {ended} ended tokens", check, seconds)
    tally.merge(check)
    return tally


def soak(args: argparse.Namespace, workdir: Path) -> int:
    """Start the servers, run the load and the final check; return the exit status."""
    password = secrets.token_urlsafe(18)
    usernames = [f"soak{n}" for n in range(args.users)]
    database_url = f"sqlite:///{workdir / 'signin.db'}"
    with redis_server() as redis:
        service = prepare(database_url, redis.url, args.password_method, usernames, password)
        port = free_port()
        env = dict(
            os.environ,
            DATABASE_URL=database_url,
            REDIS_URL=redis.url,
            RATELIMIT_ENABLED=str(args.ratelimit).lower(),
            SIGNIN_PASSWORD_METHOD=args.password_method,
            PYTHONUNBUFFERED="1",
        )
        command = [str(VENV_BIN / "signin"), "serve", "--host", HOST, "--port", str(port)]
        with spawn("signin", [*command, "--threads", str(args.server_threads)], workdir, env) as server:
            wait_until(lambda: http_answers(port), server, "signin serve")
            print(
                f"soak: {args.clients} clients for {args.duration} s on signin serve ({args.server_threads} threads), "
                f"redis {redis.version}, {args.users} users, {args.password_method}, "
                f"throttling {'on' if args.ratelimit else 'off'}"
            )
            clients = [
                Client(port, usernames[n :: args.clients], password, service, args.seed + n)
                for n in range(args.clients)
            ]
            tally = exercise(clients, args.duration, args.max_requests // args.clients)
            failed = server.popen.poll() is not None
            if failed:
                print(f"signin serve exited early with {server.popen.returncode}:\n{server.tail()}")
    print("failures: " + ", ".join(f"{kind} {tally.failures[kind]}" for kind in FAILURES))
    for example in tally.examples:
        print(f"  {example}")
    if failed or any(tally.failures.values()):
        print("FAILED")
        return 1
    print("OK: no 5xx, no connection error, no lost or undead token")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.partition("\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default: 60)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent client threads (default: 50)")
    parser.add_argument("--users", type=int, default=200, help="users made before the run (default: 200)")
    parser.add_argument("--server-threads", type=int, default=16, help="waitress threads (default: 16)")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="cap on load requests (default: 2e6)")
    parser.add_argument(
        "--password-method", default="pbkdf2:sha256:1000", help="SIGNIN_PASSWORD_METHOD (default: pbkdf2:sha256:1000)"
    )
    parser.add_argument("--ratelimit", action="store_true", help="leave throttling on (default: off)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' random choices (default: 0)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be 1..{MAX_DURATION}")
    if not 1 <= args.clients <= args.users:
        parser.error("--clients must be at least 1 and at most --users, so that every client owns a user")
    if args.max_requests < args.clients:
        parser.error("--max-requests must be at least --clients")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="signin-soak-") as workdir:
        return soak(args, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
