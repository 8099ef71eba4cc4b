"""Load generators: wrk where installed, else threads over keep-alive ``http.client`` connections."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
# No run here comes near this many requests per second; it caps every run's count.
MAX_RATE = 20_000
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    """One HTTP request to send again and again."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, path: str, fields: dict, headers: dict[str, str] | None = None) -> Request:
        """Return a POST with a JSON body."""
        return cls("POST", path, json.dumps(fields).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class LoadResult:
    """What one bounded load run measured."""

    tool: str
    connections: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Answers 503 (the service shedding load, say its bounded password checks), apart from errors.
    # Only the Python generator tells them apart; wrk counts them among its errors.
    shed: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        """Requests per second answered 200."""
        return (self.requests - self.errors - self.shed) / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        errors = f", {self.errors} ERRORS" if self.errors else ""
        shed = f", {self.shed} shed with 503" if self.shed else ""
        return f"{self.rps:,.1f} req/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms ({self.tool}{errors}{shed})"


def percentile(ordered: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100) of sorted values, nearest rank."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def find_wrk() -> str | None:
    """Return wrk's path; if missing and we are root, try ``apt-get install -y wrk`` once."""
    path = shutil.which("wrk")
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    print("wrk is missing: trying apt-get install -y wrk")
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],  # noqa: S607 - apt-get from PATH
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            capture_output=True,
            timeout=300,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"  apt-get failed ({type(exc).__name__}): using the Python load generator")
    return shutil.which("wrk")


def run_wrk(
    wrk: str, port: int, request: Request, connections: int, seconds: float, bodies: Path | None = None
) -> LoadResult:
    """Run wrk (one thread, ``connections`` keep-alive connections) for ``seconds``.

    With ``bodies`` (a file, one body per line), each request sends the next one
    instead of ``request.body``: one-shot credentials, each sent once.
    """
    headers = [arg for name, value in request.headers.items() for arg in ("-H", f"{name}: {value}")]
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        "--timeout",
        f"{REQUEST_TIMEOUT:g}s",
        "-s",
        str(WRK_SCRIPT),
        *headers,
        f"http://{HOST}:{port}{request.path}",
    ]
    env = dict(os.environ, BENCH_METHOD=request.method, BENCH_MAX=str(MAX_RATE * seconds))
    if request.body is not None:
        env["BENCH_BODY"] = request.body.decode()
    if bodies is not None:
        env["BENCH_BODIES"] = str(bodies)
    out = subprocess.run(  # noqa: S603 - wrk with our arguments
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    line = next((line for line in out.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    fields = json.loads(line.removeprefix("BENCH "))
    return LoadResult(
        "wrk", connections, fields["requests"], fields["errors"], fields["seconds"], fields["p50_ms"], fields["p99_ms"]
    )


def run_python(
    port: int,
    next_request: Callable[[], Request | None],
    connections: int,
    seconds: float,
    limit: int | None = None,
    *,
    polite: bool = False,
) -> LoadResult:
    """Send requests from ``connections`` threads until ``seconds`` pass, ``limit`` is sent or the source runs dry.

    ``next_request`` is called once per request (return None when exhausted), so
    one-shot credentials such as refresh tokens are each sent exactly once.
    ``polite``: after a 503, a thread waits as its Retry-After says, as the
    contract asks of clients.
    """
    limit = min(limit or MAX_RATE * seconds, int(MAX_RATE * seconds))
    sent = itertools.count()  # next() on it is atomic under the GIL
    latencies: list[float] = []
    errors, shed = [0], [0]
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        mine: list[float] = []
        failed = refused = 0
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        while time.perf_counter() < deadline and next(sent) < limit:
            request = next_request()
            if request is None:
                break
            began = time.perf_counter()
            try:
                conn.request(request.method, request.path, body=request.body, headers=request.headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                retry_after = response.getheader("Retry-After")
            except (OSError, http.client.HTTPException):
                conn.close()  # http.client reconnects on the next request
                status, retry_after = 0, None
            mine.append(time.perf_counter() - began)
            refused += status == 503
            failed += status not in (200, 503)
            if polite and status == 503 and retry_after:
                time.sleep(max(0.0, min(float(retry_after), deadline - time.perf_counter())))
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed
            shed[0] += refused

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return LoadResult(
        "python",
        connections,
        len(latencies),
        errors[0],
        elapsed,
        percentile(latencies, 50) * 1e3,
        percentile(latencies, 99) * 1e3,
        shed[0],
    )


def run_load(wrk: str | None, port: int, request: Request, connections: int, seconds: float) -> LoadResult:
    """Load one fixed request with wrk if we have it, else with the Python generator."""
    if wrk:
        return run_wrk(wrk, port, request, connections, seconds)
    return run_python(port, lambda: request, connections, seconds)
