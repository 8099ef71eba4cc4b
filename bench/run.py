"""Benchmark signin end to end in one bounded run: ``.venv/bin/python -m bench.run [--quick]``."""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.client
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

import psutil
import redis

from bench import ceilings, enumeration, imports, machine, report, servers, sessions
from bench.load import LoadResult, Request, find_wrk, run_load, run_python, run_wrk
from bench.report import Figure, judged
from signin.rules import passwords
from signin.rules.passwords import hash_password, verify_password
from signin.settings import DEFAULTS
from signin.store.tokens import session_ref

RESULTS = Path(__file__).with_name("results")
API = "/api/v2/account"
# waitress threads for every server, signin serve's default.
THREADS = 8
# The opt-in method, with OWASP's parameters (m=19456 KiB, t=2, p=1).
ARGON2ID = "argon2id"
# Connections of each throughput point: as many as waitress has threads, and eight times that.
CONNECTIONS = (8, 64)
CONCURRENCY = (1, 2, 4, 8)
# Clients signing in at once beside GET me in the flood phase: three times waitress's threads. Each
# sends its next sign-in as soon as one is answered, or, refused with 503, once Retry-After has passed
# (a client that ignores it is the per-address limits' to stop, which are off in the bench).
FLOOD_CLIENTS = 24
# The flood runs this long before GET me is measured beside it, so that it is in full swing.
FLOOD_LEAD_SECONDS = 1.0
# Bulk sessions are spread over users, this many each.
SESSIONS_PER_USER = 2
# With a 100-character user agent (sessions.USER_AGENT).
MAX_SESSION_BYTES = 500
# The GET me scaling check alternates few and many sessions this many times.
SCALING_PAIRS = 9
# Redis options of each persistence the durability phase compares (RDB snapshots stay off in all).
PERSISTENCE = {
    "none": (),
    "everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "always": ("--appendonly", "yes", "--appendfsync", "always"),
}
# Each load point starts with this many requests (WARM_UP_SECONDS at most) from one connection, not measured.
WARM_UP_REQUESTS = 20
WARM_UP_SECONDS = 0.3
# How fast a refresh run is assumed to go when no Redis ceiling was measured, to size its pool of tokens.
GUESSED_RPS = 5_000.0
# Sessions held by the users whose sessions are listed; the largest is judged against linear growth from the middle.
LISTING_SIZES = (1, 10, 100)
# TokenStore.sessions is timed this many times per size and round (the median).
LISTING_CALLS = 50
# The password policy's check is timed on a short and a long password (the most it accepts), this many calls a timing.
POLICY_PASSWORDS = {"short": "kV9#mq2Lx4", "long": ("kV9#mq2Lx4-" * 94)[:1024]}
POLICY_USERNAME = "alice.example"
POLICY_BATCH = 50


def time_check(hashed: str) -> float:
    """Return how long one (failing) check of a password against ``hashed`` takes, in seconds."""
    started = time.perf_counter()
    verify_password(hashed, "wrong password")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Plan:
    """How long and how big one run is."""

    load_seconds: int
    signin_seconds: int
    hash_samples: int
    memory_sessions: int
    scaling: tuple[int, int]
    revoke_sizes: tuple[int, int, int]
    revoke_repeats: int
    enumeration_attempts: int
    # Judged throughput points alternate with their ceiling this many times, in
    # halves of pair_seconds (whole seconds: wrk's -d); the median pair is judged.
    pairs: int
    # Side-by-side comparisons without a target (gunicorn, Redis persistence) alternate this many times.
    info_pairs: int
    pair_seconds: int
    # Listing a user's sessions: the sizes and store points alternate this many rounds (the median is judged).
    listing_rounds: int = 5
    # Password policy checks: timings of POLICY_BATCH calls each, per password.
    policy_samples: int = 200
    # Lines of each import of generated users (bench/imports.py).
    import_sizes: tuple[int, ...] = imports.SIZES


# In order: endpoints are judged against the ceilings measured before them.
PHASES = (
    "hash_ceiling",
    "signin_load",
    "methods",
    "enumeration",
    "ceilings",
    "endpoints",
    "gunicorn",
    "flood",
    "durability",
    "memory",
    "revoke",
    "listing",
    "policy",
    "scaling",
    "imports",
)
FULL = Plan(10, 10, 15, 100_000, (10_000, 1_000_000), (1, 100, 10_000), 3, 200, pairs=7, info_pairs=5, pair_seconds=2)
QUICK = Plan(
    1, 2, 5, 10_000, (1_000, 10_000), (1, 100, 1_000), 3, 40, pairs=3, info_pairs=1, pair_seconds=1, listing_rounds=3,
    import_sizes=imports.QUICK_SIZES,
)


def result_data(result: LoadResult) -> dict:
    """Return a load result as the JSON keeps it: its fields, its requests/s, and those answered 200."""
    return dict(asdict(result), rps=result.rps, ok_rps=result.ok_rps)


def median_pair(pairs: list[tuple[float, LoadResult, LoadResult]]) -> tuple[float, LoadResult, LoadResult]:
    """Return the median of pairs sorted by ratio."""
    return pairs[len(pairs) // 2]


def with_errors(result: LoadResult) -> str:
    """Return requests/s and latencies of a load result, and its failed requests if any."""
    return str(result).rsplit(" (", 1)[0] + (f", {result.errors} FAILED requests" if result.errors else "")


def median_of(pairs: list[tuple[float, LoadResult, LoadResult]]) -> str:
    """Say which pair of how many a figure shows, and how far the pairs' ratios spread."""
    if len(pairs) == 1:
        return "one pair"
    return f"median of {len(pairs)} alternating pairs, ratios {pairs[0][0]:.2f}..{pairs[-1][0]:.2f}"


def pair_data(pairs: list[tuple[float, LoadResult, LoadResult]], first: str, second: str) -> list[dict]:
    """Return every pair as the JSON keeps it: the ratio, and the requests/s of ``first`` and ``second``."""
    return [{"ratio": ratio, f"{first}_rps": a.rps, f"{second}_rps": b.rps} for ratio, a, b in pairs]


class Bench:
    """One run: the servers, the tools, and the figures gathered so far."""

    def __init__(
        self,
        plan: Plan,
        workdir: Path,
        redis: servers.BenchRedis,
        signin: servers.SigninServer,
        wrk: str | None,
        quiet_queue: bool = False,
    ) -> None:
        self.plan, self.workdir, self.redis, self.signin, self.wrk = plan, workdir, redis, signin, wrk
        self.quiet_queue = quiet_queue
        self.store = sessions.token_store(redis.client)
        self.cores = len(os.sched_getaffinity(0))
        # How many password checks signin serve runs at once (SIGNIN_HASH_CONCURRENCY, by default cores - 1).
        self.checks_at_once = DEFAULTS["SIGNIN_HASH_CONCURRENCY"]
        self.method = DEFAULTS["SIGNIN_PASSWORD_METHOD"]
        self.hash_seconds = 0.0
        # By (kind, connections): the ceilings phase's load points.
        self.ceiling: dict[tuple[str, int], LoadResult] = {}
        self.figures: list[Figure] = []
        self.data: dict = {}
        # The ceiling apps stay up from the ceilings phase on: the Redis one pairs with each endpoint.
        self.stack = contextlib.ExitStack()
        self.ceiling_port: dict[str, int] = {}

    @property
    def checks_beside_load(self) -> int:
        """Password checks timed before and after each sign-in point."""
        return max(3, self.plan.hash_samples // 3)

    @property
    def tool(self) -> str:
        return "wrk" if self.wrk else "python"

    def add(self, figure: Figure) -> None:
        """Record a figure and print it as it comes."""
        self.figures.append(figure)
        ratio = "" if figure.ratio is None else f" ratio {figure.ratio:.3f}"
        target = f" (target {figure.target}: {figure.verdict})" if figure.target else ""
        print(f"  {figure.name}: {figure.measured} | ceiling {figure.ceiling}{ratio}{target}", flush=True)

    def load(
        self, port: int, request: Request, connections: int = CONNECTIONS[0], seconds: float | None = None
    ) -> LoadResult:
        """Warm up for a moment, then run one measured load point with the fixed-request tool."""
        run_python(port, lambda: request, 1, WARM_UP_SECONDS, limit=WARM_UP_REQUESTS)
        return run_load(self.wrk, port, request, connections, seconds or self.plan.load_seconds)

    def sign_in(self, server: servers.SigninServer | None = None) -> dict:
        """Sign the bench user of ``server`` (by default the main one) in over HTTP; return the token object."""
        server = server or self.signin
        conn = http.client.HTTPConnection(servers.HOST, server.port, timeout=30)
        try:
            body = json.dumps({"username": server.username, "password": server.password})
            conn.request("POST", f"{API}/signin/", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"sign-in failed: {response.status} {payload[:300]!r}")
        return json.loads(payload)["token"]

    @functools.cached_property
    def hashed(self) -> str:
        """A password hash with the configured method, to time checks against."""
        return hash_password("bench password", self.method)

    def median_check(self, samples: int) -> float:
        """Return the median of ``samples`` timed password checks with the configured method, in seconds."""
        return statistics.median(time_check(self.hashed) for _ in range(samples))

    def hash_ceiling(self) -> None:
        """Time one password check with the configured method: cores ÷ that is the most sign-ins/s."""
        print(f"== password hash ceiling ({self.method})", flush=True)
        self.hash_seconds = self.median_check(self.plan.hash_samples)
        ceiling = self.cores / self.hash_seconds
        # hashlib.scrypt lets go of the GIL: threads show whether the cores really hash side by side.
        started = time.perf_counter()
        with ThreadPoolExecutor(self.cores) as pool:
            list(pool.map(lambda _: time_check(self.hashed), range(self.cores * 4)))
        parallel = self.cores * 4 / (time.perf_counter() - started)
        self.data["hash"] = {
            "method": self.method,
            "median_seconds": self.hash_seconds,
            "cores": self.cores,
            "ceiling_per_second": ceiling,
            "parallel_per_second": parallel,
        }
        self.add(
            Figure(
                f"password check ({self.method})",
                f"{self.hash_seconds * 1e3:.1f} ms median",
                f"{self.cores} cores / check = {ceiling:.2f} sign-ins/s",
                None,
            )
        )
        self.add(
            Figure(
                f"password checks on {self.cores} threads at once",
                f"{parallel:.2f} checks/s",
                f"{ceiling:.2f}/s",
                parallel / ceiling,
            )
        )

    def signin_load(self) -> None:
        """Load sign-in at each concurrency, watching the server's RSS.

        The Python generator measures this even where wrk exists: at ~1 s per request,
        wrk's fixed window drops the requests in flight at its end (5-10 % of a 10 s run),
        while ours waits for every request it started and counts it.
        """
        print("== sign-in", flush=True)
        self.sign_in()
        request = Request.json(f"{API}/signin/", {"username": self.signin.username, "password": self.signin.password})
        process = psutil.Process(self.signin.process.pid)
        idle = process.memory_info().rss
        self.data["signin"] = {}
        with machine.peak_rss(process.pid) as rss:
            for clients in CONCURRENCY:
                # The check is timed again just before and after each point: the box's speed drifts
                # within a minute, and a ceiling from minutes ago judges the drift, not the service.
                before = self.median_check(self.checks_beside_load)
                # Polite, as the contract asks of clients: a sign-in refused with 503 waits its Retry-After.
                result = run_python(self.signin.port, lambda: request, clients, self.plan.signin_seconds, polite=True)
                check = (before + self.median_check(self.checks_beside_load)) / 2
                ceiling = min(clients, self.checks_at_once) / check
                self.data["signin"][clients] = dict(result_data(result), ceiling=ceiling)
                self.add(
                    self.throughput(
                        f"sign-in, {clients} client(s)",
                        result,
                        ceiling,
                        f"min({clients}, {self.checks_at_once} checks at once) / check ({check * 1e3:.0f} ms)"
                        f" = {ceiling:.2f}/s",
                        0.9,
                        shedding=True,
                    )
                )
        # At most THREADS hashes run at once, each holding 128·N·r bytes.
        per_hash, mib = machine.scrypt_bytes(self.method), 1 << 20
        self.data["rss"] = {"idle": idle, "peak": rss["peak"], "scrypt_bytes_per_hash": per_hash, "threads": THREADS}
        growth = rss["peak"] - idle
        measured = f"{growth / mib:.0f} MiB (peak {rss['peak'] / mib:.0f}, idle {idle / mib:.0f})"
        if not per_hash:
            self.add(Figure("signin RSS growth under sign-in load", measured, f"no scrypt in {self.method}", None))
            return
        budget = THREADS * per_hash
        ceiling = f"{THREADS} threads x {per_hash / mib:.0f} MiB scrypt = {budget / mib:.0f} MiB"
        self.add(judged("signin RSS growth under sign-in load", measured, ceiling, growth / budget, high=1.1))

    def methods(self) -> None:
        """Sign-ins per core with the default method and with opt-in argon2id, side by side."""
        print("== sign-ins per check slot, by password method", flush=True)
        self.data["methods"] = {}
        for method in (self.method, ARGON2ID):
            hashed = hash_password("bench password", method)
            check = statistics.fmean(time_check(hashed) for _ in range(self.plan.hash_samples))
            workdir = self.workdir / method.replace(":", "-")
            workdir.mkdir()
            with servers.signin_server(workdir, self.redis.url, THREADS, method) as server:
                body = {"username": server.username, "password": server.password}
                request = Request.json(f"{API}/signin/", body)
                result = run_python(
                    server.port, lambda request=request: request, 2 * self.cores, self.plan.signin_seconds, polite=True
                )
            # Per check slot: signin runs SIGNIN_HASH_CONCURRENCY checks at once, each on a core of its own.
            slots = self.checks_at_once
            per_slot, ceiling = result.ok_rps / slots, 1 / check
            self.data["methods"][method] = {
                "check_seconds": check,
                "signins_per_second": result.ok_rps,
                "shed": result.shed,
                "checks_at_once": slots,
                "per_slot": per_slot,
            }
            self.add(
                Figure(
                    f"sign-ins per check slot, {method}",
                    f"{per_slot:.2f}/s per slot ({result.ok_rps:.1f}/s with {slots} check(s) at once on {self.cores} "
                    f"cores; check {check * 1e3:.1f} ms{f'; {result.shed} shed with 503' if result.shed else ''})",
                    f"1 / check = {ceiling:.2f}/s per slot",
                    per_slot / ceiling,
                    tool="python",
                )
            )

    def throughput(
        self, name: str, result: LoadResult, ceiling: float, ceiling_text: str, low: float, shedding: bool = False
    ) -> Figure:
        """Return a figure for requests/s against a ceiling; any failed request makes it a MISS.

        With ``shedding``, answers 503 are the service shedding load as designed
        (its bounded password checks): the figure judges the requests answered
        200 per second, and says how many were shed.
        """
        measured = str(result).rsplit(" (", 1)[0]
        if shedding and result.shed:
            measured = f"{result.ok_rps:,.1f} answered 200/s ({result.shed} more shed with 503); {measured}"
        rps = result.ok_rps if shedding else result.rps
        figure = judged(name, measured, ceiling_text, rps / ceiling, result.tool, low=low)
        failed = result.errors + (0 if shedding else result.shed)
        if failed:
            figure.ok, figure.measured = False, f"{figure.measured}, {failed} FAILED requests"
        return figure

    def enumeration(self) -> None:
        """Compare unknown-user, wrong-password and TOTP-user-with-a-wrong-code sign-in times."""
        print("== username enumeration by timing", flush=True)
        totp = enumeration.TOTP_USER
        self.signin.cli("users", "create", totp, "--password-stdin", stdin=self.signin.password + "\n")
        enumeration.totp_user(self.signin.port, totp, self.signin.password)
        enumeration.import_cheap_users(self.signin.cli, self.signin.password)
        result = enumeration.measure(
            self.signin.port, self.signin.username, self.plan.enumeration_attempts, totp, self.signin.password, True
        )
        self.data["enumeration"] = result
        for name, median, ratio in (
            ("unknown-user / wrong-password time", "unknown_user_median_ms", "ratio"),
            ("TOTP user, right password, wrong code / wrong-password time", "totp_wrong_code_median_ms", "totp_ratio"),
        ):
            self.add(
                judged(
                    name,
                    f"{result[median]:.1f} ms median ({result['attempts']} alternating attempts)",
                    f"wrong password {result['wrong_password_median_ms']:.1f} ms",
                    result[ratio],
                    "python",
                    low=enumeration.LOW,
                    high=enumeration.HIGH,
                )
            )
        for figure in imports.enumeration_figures(result):
            self.add(figure)

    def ceilings(self) -> None:
        """Measure bare Flask and Flask + one Redis GET on the same waitress settings and load tool, at each count."""
        print("== framework ceilings", flush=True)
        self.redis.client.set(ceilings.KEY, json.dumps([1, "bench", "signin", "read write", 0, 0, "x" * 22, "x" * 22]))
        request = Request("GET", "/")
        for kind in ("bare", "redis"):
            server = servers.ceiling_server(self.workdir, kind, self.redis.url, THREADS, self.quiet_queue)
            self.ceiling_port[kind] = self.stack.enter_context(server)
            for connections in CONNECTIONS:
                self.ceiling[kind, connections] = self.load(self.ceiling_port[kind], request, connections)
        self.data["ceilings"] = {
            str(connections): {kind: result_data(self.ceiling[kind, connections]) for kind in ("bare", "redis")}
            for connections in CONNECTIONS
        }
        for connections in CONNECTIONS:
            bare, redis = self.ceiling["bare", connections], self.ceiling["redis", connections]
            measured = str(bare).rsplit(" (", 1)[0]
            self.add(Figure(f"bare Flask JSON ceiling, {connections} connections", measured, "-", None, tool=bare.tool))
            self.add(
                Figure(
                    f"Flask + 1 Redis GET ceiling, {connections} connections",
                    str(redis).rsplit(" (", 1)[0],
                    f"bare {bare.rps:,.0f} req/s",
                    redis.rps / bare.rps,
                    tool=redis.tool,
                )
            )

    def me_request(self) -> Request:
        """Sign the bench user in; return a GET me with its access token."""
        token = self.sign_in()["access_token"]
        return Request("GET", f"{API}/me/", headers={"Authorization": f"Bearer {token}"})

    def endpoints(self) -> None:
        """Load me, introspect and refresh (each refresh token sent once) at each count, beside the Redis ceiling."""
        if not self.ceiling:
            self.ceilings()  # the ceilings judge the endpoints: ``--only endpoints`` measures them first
        print("== token endpoints", flush=True)
        token = self.sign_in()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        me = Request("GET", f"{API}/me/", headers=bearer)
        for connections in CONNECTIONS:
            self.paired("GET me", connections, functools.partial(self.load, self.signin.port, me, connections), 0.9)
        service = self.signin.service or self.signin.add_service("bench")
        if service:
            basic = base64.b64encode(":".join(service).encode()).decode()
            introspect = Request(
                "POST",
                f"{API}/introspect/",
                urlencode({"token": token["access_token"]}).encode(),
                {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
            )
            for connections in CONNECTIONS:
                run = functools.partial(self.load, self.signin.port, introspect, connections)
                self.paired("POST introspect", connections, run, 0.8)
        pool = sessions.RefreshPool(self.store, 5 * sessions.FAKE_USER_BASE, f"{API}/refresh/")
        for connections in CONNECTIONS:
            run = functools.partial(self.refresh_load, self.signin.port, pool, connections)
            self.paired("POST refresh (each token once)", connections, run, 0.6)

    def tokens_for(self, connections: int, seconds: float) -> int:
        """Return how many refresh tokens a run may spend: half again what the Redis ceiling would answer."""
        ceiling = self.ceiling.get(("redis", connections))
        rps = ceiling.rps if ceiling else GUESSED_RPS
        return int(1.5 * rps * seconds) + WARM_UP_REQUESTS + 2 * connections

    def refresh_load(self, port: int, pool: sessions.RefreshPool, connections: int, seconds: float) -> LoadResult:
        """Refresh at ``connections`` for ``seconds``, each token of ``pool`` sent once; top it up first."""
        pool.top_up(self.tokens_for(connections, seconds))
        run_python(port, pool.next, 1, WARM_UP_SECONDS, limit=WARM_UP_REQUESTS)
        available = len(pool)
        if self.wrk:
            bodies = self.workdir / "refresh-bodies.txt"
            pool.write_bodies(bodies)
            result = run_wrk(self.wrk, port, pool.requests[0], connections, seconds, bodies=bodies)
            # A token sent is spent, answered or not: skip those in flight at the end too.
            pool.spend(result.requests + result.errors + 2 * connections)
        else:
            result = run_python(port, pool.next, connections, seconds)
        if result.requests + result.errors >= available:
            print(f"  (refresh pool of {available} ran dry after {result.seconds:.1f} s)")
        return result

    def alternate(
        self, first: Callable[[float], LoadResult], second: Callable[[float], LoadResult], pairs: int
    ) -> list[tuple[float, LoadResult, LoadResult]]:
        """Run ``first`` and ``second`` side by side ``pairs`` times; return (second/first req/s, first, second)s.

        The box drifts within seconds, so only halves run back to back are
        compared, which goes first alternating too so that a drift favours
        neither; sorted by ratio, for the median pair to be judged.
        """
        results = []
        for i in range(pairs):
            if i % 2:
                b = second(self.plan.pair_seconds)
                a = first(self.plan.pair_seconds)
            else:
                a = first(self.plan.pair_seconds)
                b = second(self.plan.pair_seconds)
            results.append((b.rps / a.rps, a, b))
        return sorted(results, key=lambda pair: pair[0])

    def paired(self, name: str, connections: int, run: Callable[[float], LoadResult], low: float) -> None:
        """Alternate the Redis ceiling and an endpoint at ``connections``; judge the median pair (the box is noisy)."""
        request, port = Request("GET", "/"), self.ceiling_port["redis"]
        pairs = self.alternate(
            lambda seconds: run_load(self.wrk, port, request, connections, seconds), run, self.plan.pairs
        )
        _, ceiling, result = median_pair(pairs)
        self.endpoint(name, connections, result, low, ceiling, pairs)

    def endpoint(
        self,
        name: str,
        connections: int,
        result: LoadResult,
        low: float,
        redis: LoadResult,
        pairs: list[tuple[float, LoadResult, LoadResult]],
    ) -> None:
        """Judge an endpoint against the Redis ceiling measured beside it; note its share of the bare one."""
        bare = self.ceiling["bare", connections]
        self.data.setdefault("endpoints", []).append(
            dict(
                result_data(result),
                endpoint=name,
                ceiling=result_data(redis),
                bare_rps=bare.rps,
                pairs=pair_data(pairs, "ceiling", "endpoint"),
            )
        )
        text = f"Redis GET {redis.rps:,.0f} req/s ({median_of(pairs)})"
        figure = self.throughput(f"{name}, {connections} connections", result, redis.rps, text, low)
        figure.measured += f"; {result.rps / bare.rps:.2f} of bare"
        self.add(figure)

    def gunicorn(self) -> None:
        """Serve GET me from gunicorn (wsgi:app, a worker per core) beside signin serve, alternating; info only."""
        print(f"== GET me: gunicorn -w {self.cores} --threads {THREADS} wsgi:app beside signin serve", flush=True)
        me = self.me_request()
        data = self.data["gunicorn"] = {
            "workers": self.cores,
            "threads": THREADS,
            "serve_threads": THREADS,
            "points": [],
        }
        with servers.gunicorn_server(self.workdir, self.signin.env, self.cores, THREADS) as server:
            for connections in CONNECTIONS:
                splits: dict[int, list[int]] = {}  # by id() of the gunicorn half's result
                pairs = self.alternate(
                    functools.partial(self.load, self.signin.port, me, connections),
                    functools.partial(self.gunicorn_load, server, me, connections, splits),
                    self.plan.info_pairs,
                )
                ratio, serve, gunicorn = median_pair(pairs)
                data["points"].append(
                    {
                        "connections": connections,
                        "serve": result_data(serve),
                        "gunicorn": dict(result_data(gunicorn), connections_per_worker=splits[id(gunicorn)]),
                        "ratio": ratio,
                        "pairs": [
                            dict(pair, connections_per_worker=splits[id(g)])
                            for pair, (_, _, g) in zip(pair_data(pairs, "serve", "gunicorn"), pairs, strict=True)
                        ],
                    }
                )
                split = "+".join(map(str, splits[id(gunicorn)]))
                self.add(
                    Figure(
                        f"GET me, gunicorn / signin serve, {connections} connections",
                        f"gunicorn -w {self.cores} --threads {THREADS}: {with_errors(gunicorn)}; "
                        f"connections per worker {split}",
                        f"signin serve {with_errors(serve)} ({median_of(pairs)})",
                        ratio,
                        tool=serve.tool,
                    )
                )

    def gunicorn_load(
        self,
        server: servers.GunicornServer,
        request: Request,
        connections: int,
        splits: dict[int, list[int]],
        seconds: float,
    ) -> LoadResult:
        """Load gunicorn like ``load``; note in ``splits`` how the connections fell to its workers, midway."""
        split: list[int] = []
        timer = threading.Timer(WARM_UP_SECONDS + seconds / 2, lambda: split.extend(server.connections_per_worker()))
        timer.start()
        try:
            result = self.load(server.port, request, connections, seconds)
        finally:
            timer.cancel()
            timer.join()
        splits[id(result)] = split
        return result

    def flood(self) -> None:
        """Time GET me quiet, then as long again while FLOOD_CLIENTS clients sign in beside it; judge the p99s.

        Both GET me runs use the Python generator even where wrk exists: a
        request stuck behind sign-ins can take seconds, and wrk's fixed window
        drops those in flight at its end (the slowest), while ours waits for
        every request it started and counts it.
        """
        connections, seconds, port = CONNECTIONS[0], self.plan.load_seconds, self.signin.port
        print(f"== GET me at {connections} connections, quiet and beside {FLOOD_CLIENTS} sign-in clients", flush=True)
        me = self.me_request()
        run_python(port, lambda: me, 1, WARM_UP_SECONDS, limit=WARM_UP_REQUESTS)
        quiet = run_python(port, lambda: me, connections, seconds)
        signin = Request.json(f"{API}/signin/", {"username": self.signin.username, "password": self.signin.password})
        with ThreadPoolExecutor(1) as pool:
            # The flood too waits for every sign-in it started, so it outlasts GET me's run.
            flood = pool.submit(
                run_python, port, lambda: signin, FLOOD_CLIENTS, FLOOD_LEAD_SECONDS + seconds, polite=True
            )
            time.sleep(FLOOD_LEAD_SECONDS)
            flooded = run_python(port, lambda: me, connections, seconds)
            signins = flood.result()
        self.data["flood"] = {
            "clients": FLOOD_CLIENTS,
            "quiet": result_data(quiet),
            "flooded": result_data(flooded),
            "signins": result_data(signins),
        }
        ratio = flooded.p99_ms / quiet.p99_ms if flooded.requests and quiet.requests else math.inf
        figure = judged(
            f"GET me p99 beside a sign-in flood, {connections} connections",
            f"p99 {flooded.p99_ms:.2f} ms, p50 {flooded.p50_ms:.2f} ms, {flooded.rps:,.0f} req/s; beside "
            f"{signins.ok_rps:.1f} sign-ins/s from {FLOOD_CLIENTS} clients (p50 {signins.p50_ms:,.0f} ms; "
            f"{signins.shed} more shed with 503, {signins.shed / signins.seconds:,.0f}/s)",
            f"quiet p99 {quiet.p99_ms:.2f} ms, p50 {quiet.p50_ms:.2f} ms, {quiet.rps:,.0f} req/s",
            ratio,
            flooded.tool,
            high=2.0,
        )
        if flooded.errors or quiet.errors or signins.errors or not flooded.requests:
            figure.ok = False
            figure.measured += f"; FAILED: {quiet.errors} quiet, {flooded.errors} flooded, {signins.errors} sign-ins"
        self.add(figure)

    @contextlib.contextmanager
    def durable_target(self, mode: str) -> Iterator[tuple[int, sessions.RefreshPool, dict]]:
        """Run a redis-server with ``mode``'s persistence and a signin serve on it; yield its port, pool and setup."""
        workdir = self.workdir / f"persistence-{mode}"
        workdir.mkdir()
        with (
            servers.redis_server(*PERSISTENCE[mode]) as redis,
            servers.signin_server(workdir, redis.url, THREADS, quiet_queue=self.quiet_queue) as server,
        ):
            store = sessions.token_store(redis.client)
            self.sign_in(server)  # answers before it is loaded
            config = redis.client.config_get("appendonly") | redis.client.config_get("appendfsync")
            setup = {"redis_options": list(PERSISTENCE[mode]), "config": config, "dir": str(redis.server.directory)}
            yield server.port, sessions.RefreshPool(store, 5 * sessions.FAKE_USER_BASE, f"{API}/refresh/"), setup

    def durability(self) -> None:
        """Refresh against signin serves whose Redis keeps an append-only file, beside one that keeps nothing."""
        connections = CONNECTIONS[0]
        print(f"== POST refresh at {connections} connections, Redis with an AOF (fsync everysec, always) or none")
        data = self.data["durability"] = {"connections": connections, "setups": {}, "points": []}
        with contextlib.ExitStack() as stack:
            targets = {mode: stack.enter_context(self.durable_target(mode)) for mode in PERSISTENCE}
            data["setups"] = {mode: setup for mode, (*_, setup) in targets.items()}
            # fsync costs what the disk makes it cost: nothing on tmpfs.
            disk = data["filesystem"] = machine.filesystem(data["setups"]["always"]["dir"])

            def refresh(mode: str) -> Callable[[float], LoadResult]:
                port, pool, _ = targets[mode]
                return functools.partial(self.refresh_load, port, pool, connections)

            for mode in ("everysec", "always"):
                pairs = self.alternate(refresh("none"), refresh(mode), self.plan.info_pairs)
                ratio, none, durable = median_pair(pairs)
                data["points"].append(
                    {
                        "appendfsync": mode,
                        "none": result_data(none),
                        "durable": result_data(durable),
                        "ratio": ratio,
                        "pairs": pair_data(pairs, "none", "durable"),
                    }
                )
                self.add(
                    Figure(
                        f"POST refresh, Redis AOF appendfsync {mode} / no persistence, {connections} connections",
                        with_errors(durable),
                        f"no persistence {with_errors(none)} ({median_of(pairs)}; AOF on {disk})",
                        ratio,
                        tool=none.tool,
                    )
                )

    def memory(self) -> None:
        """Measure Redis memory per session over many sessions made by TokenStore.issue."""
        print("== Redis memory per session", flush=True)
        self.redis.client.flushdb()
        result = sessions.memory_per_session(
            self.redis.client, self.store, self.plan.memory_sessions, SESSIONS_PER_USER
        )
        self.data["memory"] = dict(result, max_bytes_per_session=MAX_SESSION_BYTES)
        per, floor = result["bytes_per_session"], result["payload_bytes_per_session"]
        self.add(
            Figure(
                "Redis memory per live session",
                f"{per:.0f} B ({result['sessions']:,} via TokenStore.issue in {result['issue_seconds']:.0f} s"
                f", {SESSIONS_PER_USER}/user)",
                f"payload floor {floor} B (key names + values)",
                per / floor,
                f"<= {MAX_SESSION_BYTES} B",
                per <= MAX_SESSION_BYTES,
            )
        )

    def revoke(self) -> None:
        """Time signout-everywhere (TokenStore.revoke_user) for growing session counts, among other sessions.

        Beyond the default cap of sessions per user (SIGNIN_MAX_SESSIONS_PER_USER),
        which would end all but the newest: this store's cap is raised to the
        largest count, as an operator might raise the service's.
        """
        others = self.redis.client.dbsize()
        one, some, many = self.plan.revoke_sizes
        cap = max(self.store.max_sessions, many)
        print(f"== signout everywhere ({others:,} other keys live; cap per user raised to {cap:,})", flush=True)
        store = sessions.token_store(self.redis.client, SIGNIN_MAX_SESSIONS_PER_USER=cap)
        user_id = 3 * sessions.FAKE_USER_BASE
        rtt = sessions.round_trip_seconds(self.redis.client)
        t = {
            n: sessions.revoke_user_seconds(store, user_id, n, self.plan.revoke_repeats) for n in self.plan.revoke_sizes
        }
        self.data["revoke_user"] = {
            "max_sessions_per_user": cap,
            "round_trip_seconds": rtt,
            "others_keys": others,
            "seconds": {str(n): s for n, s in t.items()},
        }
        self.add(
            Figure(
                f"signout everywhere, {one} session",
                f"{t[one] * 1e3:.2f} ms",
                f"3 Redis round trips = {3 * rtt * 1e3:.2f} ms",
                t[one] / (3 * rtt),
            )
        )
        self.add(
            Figure(
                f"signout everywhere, {some} sessions",
                f"{t[some] * 1e3:.2f} ms ({t[some] / some * 1e6:.1f} us/session)",
                f"{one} session: {t[one] * 1e3:.2f} ms",
                t[some] / t[one],
            )
        )
        self.add(
            judged(
                f"signout everywhere, {many:,} sessions",
                f"{t[many] * 1e3:.1f} ms ({t[many] / many * 1e6:.1f} us/session)",
                f"linear from {some}: {t[some] * many / some * 1e3:.1f} ms",
                t[many] / (t[some] * many / some),
                high=1.25,
            )
        )

    def listing(self) -> None:
        """Time listing a user's sessions for 1, 10 and 100 of them: GET /api/v2/account/sessions/ and the store's read.

        Each size's user gets its sessions through TokenStore.issue. The sizes,
        GET me and the store's reads alternate, round after round, so that the
        box's drift spreads over all of them; each figure is the median of its
        rounds. Judged like signout everywhere: the most against linear growth
        from the middle size, the fewest against a few round trips.
        """
        one, some, many = LISTING_SIZES
        rounds, seconds, port = self.plan.listing_rounds, self.plan.pair_seconds, self.signin.port
        print(f"== listing a user's sessions: {one}, {some}, {many} sessions ({rounds} rounds)", flush=True)
        users = {n: 4 * sessions.FAKE_USER_BASE + n for n in LISTING_SIZES}
        tokens = {n: sessions.user_with_sessions(self.store, users[n], n).access_token for n in LISTING_SIZES}

        def bearer(n: int) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[n]}"}

        listing = {n: Request("GET", f"{API}/sessions/", headers=bearer(n)) for n in LISTING_SIZES}
        self.check_listing(listing)
        me = Request("GET", f"{API}/me/", headers=bearer(one))
        rtt = sessions.round_trip_seconds(self.redis.client)
        http: dict[int, list[LoadResult]] = {n: [] for n in LISTING_SIZES}
        me_runs: list[LoadResult] = []
        store: dict[int, list[float]] = {n: [] for n in LISTING_SIZES}
        try:
            for _ in range(rounds):
                me_runs.append(self.load(port, me, 1, seconds))
                for n in LISTING_SIZES:
                    http[n].append(self.load(port, listing[n], 1, seconds))
                    read = functools.partial(self.store.sessions, users[n])
                    store[n].append(sessions.median_seconds(read, LISTING_CALLS))
        finally:
            for user_id in users.values():
                self.store.revoke_user(user_id)
        p50 = {n: statistics.median(r.p50_ms for r in runs) / 1e3 for n, runs in http.items()}
        me_p50 = statistics.median(r.p50_ms for r in me_runs) / 1e3
        direct = {n: statistics.median(times) for n, times in store.items()}
        self.data["listing"] = {
            "sizes": list(LISTING_SIZES),
            "rounds": rounds,
            "round_trip_seconds": rtt,
            "http_p50_seconds": {str(n): s for n, s in p50.items()},
            "me_p50_seconds": me_p50,
            "store_seconds": {str(n): s for n, s in direct.items()},
            "http": {str(n): [result_data(r) for r in runs] for n, runs in http.items()},
            "me": [result_data(r) for r in me_runs],
            "store_rounds": {str(n): times for n, times in store.items()},
        }
        tool, spread = me_runs[0].tool, f"median of {rounds} rounds, 1 connection"
        self.add(
            Figure(
                f"GET sessions, {one} session, p50",
                f"{p50[one] * 1e3:.2f} ms ({spread})",
                f"GET me p50 {me_p50 * 1e3:.2f} ms (the same rounds)",
                p50[one] / me_p50,
                tool=tool,
            )
        )
        self.add(
            Figure(
                f"GET sessions, {some} sessions, p50",
                f"{p50[some] * 1e3:.2f} ms ({(p50[some] - p50[one]) / (some - one) * 1e6:.0f} us a session more)",
                f"{one} session: {p50[one] * 1e3:.2f} ms",
                p50[some] / p50[one],
                tool=tool,
            )
        )
        self.add(
            judged(
                f"GET sessions, {many} sessions, p50",
                f"{p50[many] * 1e3:.2f} ms ({(p50[many] - p50[one]) / (many - one) * 1e6:.0f} us a session more)",
                f"linear from {some}: {p50[some] * many / some * 1e3:.2f} ms",
                p50[many] / (p50[some] * many / some),
                tool,
                high=1.25,
            )
        )
        self.add(
            Figure(
                f"TokenStore.sessions, {one} session",
                f"{direct[one] * 1e3:.3f} ms (median of {rounds} x {LISTING_CALLS} calls)",
                f"2 Redis round trips = {2 * rtt * 1e3:.3f} ms",
                direct[one] / (2 * rtt),
            )
        )
        self.add(
            Figure(
                f"TokenStore.sessions, {some} sessions",
                f"{direct[some] * 1e3:.3f} ms ({direct[some] / some * 1e6:.1f} us/session)",
                f"{one} session: {direct[one] * 1e3:.3f} ms",
                direct[some] / direct[one],
            )
        )
        self.add(
            judged(
                f"TokenStore.sessions, {many} sessions",
                f"{direct[many] * 1e3:.3f} ms ({direct[many] / many * 1e6:.1f} us/session)",
                f"linear from {some}: {direct[some] * many / some * 1e3:.3f} ms",
                direct[many] / (direct[some] * many / some),
                high=1.25,
            )
        )

    def check_listing(self, listing: dict[int, Request]) -> None:
        """Make sure each listing answers 200 with as many sessions as its user holds, before timing it."""
        for n, request in listing.items():
            conn = http.client.HTTPConnection(servers.HOST, self.signin.port, timeout=30)
            try:
                conn.request(request.method, request.path, headers=request.headers)
                response = conn.getresponse()
                payload = response.read()
            finally:
                conn.close()
            listed = len(json.loads(payload)["sessions"]) if response.status == 200 else None
            if listed != n:
                raise RuntimeError(f"GET sessions for {n} sessions: {response.status}, {listed} listed")

    def policy(self) -> None:
        """Time the password policy's check (signin.rules.policy.refusals) per call, beside one password check."""
        from signin.rules import policy

        print("== password policy check", flush=True)
        policy.common_passwords.cache_clear()
        started = time.perf_counter()
        common = len(policy.common_passwords())  # built on the first check, then a set lookup
        build = time.perf_counter() - started
        min_length = DEFAULTS["SIGNIN_PASSWORD_MIN_LENGTH"]
        per_call = {}
        for label, password in POLICY_PASSWORDS.items():
            check = functools.partial(policy.refusals, password, POLICY_USERNAME, min_length=min_length)
            if check():
                raise RuntimeError(f"the policy refuses the bench's {label} password: {check()}")
            per_call[label] = sessions.median_seconds(check, self.plan.policy_samples, POLICY_BATCH)
        hashing = self.hash_seconds or self.median_check(self.plan.hash_samples)
        self.data["policy"] = {
            "min_length": min_length,
            "common_passwords": common,
            "build_seconds": build,
            "lengths": {label: len(password) for label, password in POLICY_PASSWORDS.items()},
            "seconds_per_call": per_call,
            "samples": self.plan.policy_samples,
            "calls_per_sample": POLICY_BATCH,
            "hash_method": self.method,
            "hash_seconds": hashing,
        }
        for label, password in POLICY_PASSWORDS.items():
            self.add(
                Figure(
                    f"password policy check, {len(password)} characters",
                    f"{per_call[label] * 1e6:.1f} us per call (1/{hashing / per_call[label]:,.0f} of a password check)",
                    f"one password check ({self.method}) {hashing * 1e3:.1f} ms",
                    None,  # some 1e-4: the text says it
                )
            )
        self.add(
            Figure(
                "password policy: common-password list built once",
                f"{build * 1e3:.0f} ms for {common:,} passwords (on the first check a process makes)",
                "-",
                None,
            )
        )

    def scaling(self) -> None:
        """Compare GET me latency with few and with very many live sessions, alternating between them.

        Redis databases 0 and 1 each hold the bench user's session, one among
        few and one among many others. signin reads database 0, and SWAPDB
        trades the two in an instant, so the pairs alternate without refilling
        and the box's drift between them cancels out.
        """
        small, large = self.plan.scaling
        print(f"== GET me with {small:,} and {large:,} live sessions", flush=True)
        few_db = self.redis.client
        many_db = redis.Redis.from_url(f"{self.redis.url.rsplit('/', 1)[0]}/1", decode_responses=True)
        few_db.flushdb()
        many_db.flushdb()
        fill_seconds = sessions.fill(few_db, small, SESSIONS_PER_USER)
        fill_seconds += sessions.fill(many_db, large, SESSIONS_PER_USER)
        memory = few_db.info("memory")["used_memory"]
        token = self.sign_in()["access_token"]
        key = f"{DEFAULTS['SIGNIN_REDIS_PREFIX']}s:{session_ref(token.split('.')[0])}"
        few_db.copy(key, key, destination_db="1")  # with its TTL
        me = Request("GET", f"{API}/me/", headers={"Authorization": f"Bearer {token}"})
        pairs = []
        try:
            for _ in range(SCALING_PAIRS):
                few = self.load(self.signin.port, me, 1, self.plan.pair_seconds)
                few_db.swapdb(0, 1)
                try:
                    lots = self.load(self.signin.port, me, 1, self.plan.pair_seconds)
                finally:
                    few_db.swapdb(0, 1)
                pairs.append((lots.p50_ms / few.p50_ms, few, lots))
        finally:
            many_db.flushdb()
            many_db.close()
        pairs.sort(key=lambda pair: pair[0])
        ratio, few, lots = pairs[len(pairs) // 2]
        self.data["scaling"] = {
            "sessions": [small, large],
            "fill_seconds": fill_seconds,
            "used_memory": memory,
            "few": asdict(few),
            "many": asdict(lots),
            "pairs": [{"ratio": r, "few_p50_ms": f.p50_ms, "many_p50_ms": m.p50_ms} for r, f, m in pairs],
        }
        self.add(
            judged(
                f"GET me p50, {large:,} vs {small:,} sessions (1 client)",
                f"p50 {lots.p50_ms:.3f} ms, p99 {lots.p99_ms:.3f} ms (p99 x{lots.p99_ms / few.p99_ms:.2f})",
                f"p50 {few.p50_ms:.3f} ms, p99 {few.p99_ms:.3f} ms (median of {SCALING_PAIRS} alternating pairs)",
                ratio,
                few.tool,
                high=1.10,
            )
        )

    def imports(self) -> None:
        """Import generated users into SQLite and PostgreSQL, and check each imported format (bench/imports.py)."""
        self.data["imports"], figures = imports.phase(self.workdir, self.redis.url, self.method, self.plan.import_sizes)
        for figure in figures:
            self.add(figure)

    def describe(self) -> dict:
        """Describe where and how this ran."""
        return machine.describe(
            cores=self.cores,
            redis=self.redis.version,
            method=self.method,
            waitress_threads=THREADS,
            connections=" and ".join(map(str, CONNECTIONS)),
            tool=f"{self.tool} for me, introspect and refresh; python for sign-in, enumeration and the flood",
            waitress_queue_warning="silenced (--quiet-queue)" if self.quiet_queue else "logged, as shipped",
            # All load comes from one address, which the limits would refuse.
            throttling="off (RATELIMIT_ENABLED=false)",
        )


def main() -> None:
    """Run every phase, print the summary, write bench/results/<date>[-quick][-quiet-queue].{json,md,png}."""
    # The checks this process times itself measure the box, not the service: no bound on them here.
    passwords.bound(4 * len(os.sched_getaffinity(0)), 60.0)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long load points and fewer sessions (CI)")
    parser.add_argument("--python-only", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--only", metavar="PHASE", nargs="+", choices=PHASES, help="run these phases only (no files)")
    parser.add_argument(
        "--quiet-queue",
        action="store_true",
        help='silence waitress\'s "Task queue depth" warning in the ceiling apps and signin serve (an experiment)',
    )
    args = parser.parse_args()
    # A SIGTERM unwinds like an exception, so every server is still stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = QUICK if args.quick else FULL
    started, cpu_before = time.monotonic(), machine.cpu_seconds()
    wrk = None if args.python_only else find_wrk()
    with (
        tempfile.TemporaryDirectory(prefix="signin-bench-") as tmp,
        servers.redis_server() as redis,
        servers.signin_server(Path(tmp), redis.url, THREADS, quiet_queue=args.quiet_queue) as signin,
    ):
        bench = Bench(plan, Path(tmp), redis, signin, wrk, args.quiet_queue)
        with bench.stack:
            for name in args.only or PHASES:
                getattr(bench, name)()
        info = bench.describe()
    # Other processes on the box (a test suite, say) skew every figure: say how much they ran.
    seconds = time.monotonic() - started
    (box, ours), (box0, ours0) = machine.cpu_seconds(), cpu_before
    others = max(0.0, (box - box0) - (ours - ours0)) / (seconds * bench.cores)
    info.update(seconds=round(seconds), other_processes_cpu=f"{others:.0%}")
    if others > 0.05:
        print(f"WARNING: other processes used {others:.0%} of the CPU during the run; figures are skewed.")
    date = time.strftime("%Y-%m-%d")
    stem = date + ("-quick" if args.quick else "") + ("-quiet-queue" if args.quiet_queue else "")
    title = f"signin benchmark, {date}{' (quick)' if args.quick else ''}"
    title += " (waitress queue warning silenced)" if args.quiet_queue else ""
    print(f"\n{title}: {info}\n")
    print(report.text_table(bench.figures))
    if args.only:
        return
    paths = report.write(RESULTS, stem, title, info, bench.figures, bench.data)
    print("\nWrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    main()
