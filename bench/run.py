"""Benchmark signin end to end in one bounded run: ``.venv/bin/python -m bench.run [--quick]``."""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

import psutil
import redis

from bench import ceilings, enumeration, machine, report, servers, sessions
from bench.load import LoadResult, Request, find_wrk, run_load, run_python, run_wrk
from bench.report import Figure, judged
from config import Config
from signin.passwords import hash_password, verify_password
from signin.tokens import session_ref

RESULTS = Path(__file__).with_name("results")
API = "/api/v2/account"
# waitress threads for every server, signin serve's default; and connections per throughput run.
THREADS = 8
# The opt-in method, with OWASP's parameters (m=19456 KiB, t=2, p=1).
ARGON2ID = "argon2id"
CONNECTIONS = 8
CONCURRENCY = (1, 2, 4, 8)
# Bulk sessions are spread over users, this many each.
SESSIONS_PER_USER = 2
MAX_SESSION_BYTES = 400
# Each endpoint alternates with the Redis ceiling this many times, in short
# halves (the box drifts within seconds); the median ratio is judged.
PAIRS = 9


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
    refresh_pool: int
    enumeration_attempts: int


# In order: endpoints are judged against the ceilings measured before them.
PHASES = (
    "hash_ceiling",
    "signin_load",
    "methods",
    "enumeration",
    "ceilings",
    "endpoints",
    "memory",
    "revoke",
    "scaling",
)
FULL = Plan(10, 10, 15, 100_000, (10_000, 1_000_000), (1, 100, 10_000), 3, 40_000, 200)
QUICK = Plan(1, 2, 5, 10_000, (1_000, 10_000), (1, 100, 1_000), 3, 8_000, 40)


class Bench:
    """One run: the servers, the tools, and the figures gathered so far."""

    def __init__(
        self, plan: Plan, workdir: Path, redis: servers.BenchRedis, signin: servers.SigninServer, wrk: str | None
    ) -> None:
        self.plan, self.workdir, self.redis, self.signin, self.wrk = plan, workdir, redis, signin, wrk
        self.store = sessions.token_store(redis.client)
        self.cores = len(os.sched_getaffinity(0))
        self.method = Config.SIGNIN_PASSWORD_METHOD
        self.hash_seconds = 0.0
        self.ceiling: dict[str, LoadResult] = {}
        self.figures: list[Figure] = []
        self.data: dict = {}
        self.chart_signin: list[tuple[int, float, float]] = []
        self.chart_endpoints: list[tuple[str, float, float, float]] = []
        # The Redis ceiling app stays up from the ceilings phase on, to pair with each endpoint.
        self.stack = contextlib.ExitStack()
        self.redis_ceiling_port = 0

    @property
    def pair_seconds(self) -> float:
        """Each half of an alternating pair runs this long."""
        return max(1.0, self.plan.load_seconds / 4)

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
        self, port: int, request: Request, connections: int = CONNECTIONS, seconds: float | None = None
    ) -> LoadResult:
        """Warm up for a moment, then run one measured load point with the fixed-request tool."""
        run_python(port, lambda: request, 1, 0.3, limit=20)
        return run_load(self.wrk, port, request, connections, seconds or self.plan.load_seconds)

    def sign_in(self) -> dict:
        """Sign the bench user in over HTTP; return the token object."""
        conn = http.client.HTTPConnection(servers.HOST, self.signin.port, timeout=30)
        try:
            body = json.dumps({"username": self.signin.username, "password": self.signin.password})
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
                result = run_python(self.signin.port, lambda: request, clients, self.plan.signin_seconds)
                check = (before + self.median_check(self.checks_beside_load)) / 2
                ceiling = min(clients, self.cores) / check
                self.data["signin"][clients] = dict(asdict(result), rps=result.rps, ceiling=ceiling)
                self.chart_signin.append((clients, result.rps, ceiling))
                self.add(
                    self.throughput(
                        f"sign-in, {clients} client(s)",
                        result,
                        ceiling,
                        f"min({clients}, {self.cores} cores) / check ({check * 1e3:.0f} ms) = {ceiling:.2f}/s",
                        0.9,
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
        print("== sign-ins per core, by password method", flush=True)
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
                    server.port, lambda request=request: request, 2 * self.cores, self.plan.signin_seconds
                )
            per_core, ceiling = result.rps / self.cores, 1 / check
            self.data["methods"][method] = {
                "check_seconds": check,
                "signins_per_second": result.rps,
                "per_core": per_core,
            }
            self.add(
                Figure(
                    f"sign-ins per core, {method}",
                    f"{per_core:.2f}/s per core ({result.rps:.1f}/s on {self.cores} cores; check {check * 1e3:.1f} ms)",
                    f"1 / check = {ceiling:.2f}/s per core",
                    per_core / ceiling,
                    tool="python",
                )
            )

    def throughput(self, name: str, result: LoadResult, ceiling: float, ceiling_text: str, low: float) -> Figure:
        """Return a figure for requests/s against a ceiling; any failed request makes it a MISS."""
        figure = judged(name, str(result).rsplit(" (", 1)[0], ceiling_text, result.rps / ceiling, result.tool, low=low)
        if result.errors:
            figure.ok, figure.measured = False, f"{figure.measured}, {result.errors} FAILED requests"
        return figure

    def enumeration(self) -> None:
        """Compare unknown-user and wrong-password sign-in times."""
        print("== username enumeration by timing", flush=True)
        result = enumeration.measure(self.signin.port, self.signin.username, self.plan.enumeration_attempts)
        self.data["enumeration"] = result
        self.add(
            judged(
                "unknown-user / wrong-password time",
                f"{result['unknown_user_median_ms']:.1f} ms median ({result['attempts']} alternating attempts)",
                f"wrong password {result['wrong_password_median_ms']:.1f} ms",
                result["ratio"],
                "python",
                low=enumeration.LOW,
                high=enumeration.HIGH,
            )
        )

    def ceilings(self) -> None:
        """Measure bare Flask and Flask + one Redis GET on the same waitress settings and load tool."""
        print("== framework ceilings", flush=True)
        self.redis.client.set(ceilings.KEY, json.dumps([1, "bench", "signin", "read write", 0, 0, "x" * 22, "x" * 22]))
        request = Request("GET", "/")
        for kind in ("bare", "redis"):
            port = self.stack.enter_context(servers.ceiling_server(self.workdir, kind, self.redis.url, THREADS))
            self.ceiling[kind] = self.load(port, request)
            if kind == "redis":
                self.redis_ceiling_port = port
        self.data["ceilings"] = {f"{kind} ({r.tool})": dict(asdict(r), rps=r.rps) for kind, r in self.ceiling.items()}
        bare, redis = self.ceiling["bare"], self.ceiling["redis"]
        self.add(Figure("bare Flask JSON ceiling", str(bare).rsplit(" (", 1)[0], "-", None, tool=bare.tool))
        self.add(
            Figure(
                "Flask + 1 Redis GET ceiling",
                str(redis).rsplit(" (", 1)[0],
                f"bare {bare.rps:,.0f} req/s",
                redis.rps / bare.rps,
                tool=redis.tool,
            )
        )

    def endpoints(self) -> None:
        """Load me, introspect and refresh (each refresh token sent once) with wrk where installed."""
        print("== token endpoints", flush=True)
        token = self.sign_in()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        me = Request("GET", f"{API}/me/", headers=bearer)
        self.paired("GET me", lambda seconds: self.load(self.signin.port, me, seconds=seconds), self.tool, 0.9)
        service = self.signin.service or self.signin.add_service("bench")
        if service:
            basic = base64.b64encode(":".join(service).encode()).decode()
            introspect = Request(
                "POST",
                f"{API}/introspect/",
                urlencode({"token": token["access_token"]}).encode(),
                {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
            )
            self.paired(
                "POST introspect",
                lambda seconds: self.load(self.signin.port, introspect, seconds=seconds),
                self.tool,
                0.8,
            )
        user_id = self.store.resolve(token["access_token"]).user_id
        pool = deque(
            Request.json(f"{API}/refresh/", {"refresh_token": issued.refresh_token})
            for issued in sessions.issue_many(
                self.store, self.plan.refresh_pool, lambda _: (user_id, self.signin.username)
            )
        )

        def next_refresh() -> Request | None:
            try:
                return pool.popleft()
            except IndexError:
                return None

        def refresh(seconds: float) -> LoadResult:
            run_python(self.signin.port, next_refresh, 1, 0.3, limit=20)
            if self.wrk:
                bodies = self.workdir / "refresh-bodies.txt"
                bodies.write_text("".join(f"{request.body.decode()}\n" for request in pool))
                result = run_wrk(self.wrk, self.signin.port, pool[0], CONNECTIONS, seconds, bodies=bodies)
                # A token sent is spent, answered or not: skip those in flight at the end too.
                for _ in range(min(len(pool), result.requests + result.errors + 2 * CONNECTIONS)):
                    pool.popleft()
            else:
                result = run_python(self.signin.port, next_refresh, CONNECTIONS, seconds)
            if not pool:
                print(f"  (refresh pool of {self.plan.refresh_pool} ran dry after {result.seconds:.1f} s)")
            return result

        self.paired("POST refresh (each token once)", refresh, self.tool, 0.6)

    def paired(self, name: str, run: Callable[[float], LoadResult], tool: str, low: float) -> None:
        """Alternate the Redis ceiling and an endpoint PAIRS times; judge the median pair (the box is noisy)."""
        ceiling_request = Request("GET", "/")
        pairs = []
        wrk = self.wrk if tool == "wrk" else None
        for i in range(PAIRS):
            # Which half goes first alternates too, so a drift favours neither.
            if i % 2:
                result = run(self.pair_seconds)
                ceiling = run_load(wrk, self.redis_ceiling_port, ceiling_request, CONNECTIONS, self.pair_seconds)
            else:
                ceiling = run_load(wrk, self.redis_ceiling_port, ceiling_request, CONNECTIONS, self.pair_seconds)
                result = run(self.pair_seconds)
            pairs.append((result.rps / ceiling.rps, result, ceiling))
        pairs.sort(key=lambda pair: pair[0])
        _, result, ceiling = pairs[len(pairs) // 2]
        self.data.setdefault("pairs", {})[name] = [
            {"ratio": ratio, "rps": r.rps, "ceiling_rps": c.rps} for ratio, r, c in pairs
        ]
        self.endpoint(name, result, low, ceiling)

    def endpoint(self, name: str, result: LoadResult, low: float, redis: LoadResult) -> None:
        """Judge an endpoint against the Redis ceiling measured beside it; note its share of the bare one."""
        bare = self.ceiling["bare"]
        self.data.setdefault("endpoints", {})[name] = dict(asdict(result), rps=result.rps)
        self.chart_endpoints.append((f"{name.split(' (')[0]}\n({result.tool})", result.rps, redis.rps, bare.rps))
        text = f"Redis GET {redis.rps:,.0f} req/s (median of {PAIRS} alternating pairs)"
        figure = self.throughput(name, result, redis.rps, text, low)
        figure.measured += f"; {result.rps / bare.rps:.2f} of bare"
        self.add(figure)

    def memory(self) -> None:
        """Measure Redis memory per session over many sessions made by TokenStore.issue."""
        print("== Redis memory per session", flush=True)
        self.redis.client.flushdb()
        result = sessions.memory_per_session(
            self.redis.client, self.store, self.plan.memory_sessions, SESSIONS_PER_USER
        )
        self.data["memory"] = result
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
        """Time signout-everywhere (TokenStore.revoke_user) for growing session counts, among other sessions."""
        others = self.redis.client.dbsize()
        print(f"== signout everywhere ({others:,} other keys live)", flush=True)
        user_id = 3 * sessions.FAKE_USER_BASE
        rtt = sessions.round_trip_seconds(self.redis.client)
        one, some, many = self.plan.revoke_sizes
        t = {
            n: sessions.revoke_user_seconds(self.store, user_id, n, self.plan.revoke_repeats)
            for n in self.plan.revoke_sizes
        }
        self.data["revoke_user"] = {
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
        key = f"{Config.SIGNIN_REDIS_PREFIX}s:{session_ref(token.split('.')[0])}"
        many_db.set(key, few_db.get(key), px=few_db.pttl(key))
        me = Request("GET", f"{API}/me/", headers={"Authorization": f"Bearer {token}"})
        pairs = []
        try:
            for _ in range(PAIRS):
                few = self.load(self.signin.port, me, 1, self.pair_seconds)
                few_db.swapdb(0, 1)
                try:
                    lots = self.load(self.signin.port, me, 1, self.pair_seconds)
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
                f"p50 {few.p50_ms:.3f} ms, p99 {few.p99_ms:.3f} ms (median of {PAIRS} alternating pairs)",
                ratio,
                few.tool,
                high=1.10,
            )
        )

    def describe(self) -> dict:
        """Describe where and how this ran."""
        return machine.describe(
            cores=self.cores,
            redis=self.redis.version,
            method=self.method,
            waitress_threads=THREADS,
            connections=CONNECTIONS,
            tool=f"{self.tool} for me, introspect and refresh; python for sign-in and enumeration",
            # All load comes from one address, which the limits would refuse.
            throttling="off (RATELIMIT_ENABLED=false)",
        )


def main() -> None:
    """Run every phase, print the summary, write bench/results/<date>[-quick].{json,md,png}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long load points and fewer sessions (CI)")
    parser.add_argument("--python-only", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--only", metavar="PHASE", nargs="+", choices=PHASES, help="run these phases only (no files)")
    args = parser.parse_args()
    # A SIGTERM unwinds like an exception, so every server is still stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = QUICK if args.quick else FULL
    started, cpu_before = time.monotonic(), machine.cpu_seconds()
    wrk = None if args.python_only else find_wrk()
    with (
        tempfile.TemporaryDirectory(prefix="signin-bench-") as tmp,
        servers.redis_server() as redis,
        servers.signin_server(Path(tmp), redis.url, THREADS) as signin,
    ):
        bench = Bench(plan, Path(tmp), redis, signin, wrk)
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
    stem = f"{date}-quick" if args.quick else date
    title = f"signin benchmark, {date}{' (quick)' if args.quick else ''}"
    print(f"\n{title}: {info}\n")
    print(report.text_table(bench.figures))
    if args.only:
        return
    paths = report.write(
        RESULTS, stem, title, info, bench.figures, bench.data, bench.chart_endpoints, bench.chart_signin
    )
    print("\nWrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    main()
