"""Does sign-in timing tell which usernames exist? Unknown-user vs wrong-password median time.

Run alone: ``.venv/bin/python -m bench.enumeration [--attempts 200 | --quick]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import servers

SIGNIN = "/api/v2/account/signin/"
LOW, HIGH = 0.9, 1.1
QUICK_ATTEMPTS = 60
# Give up rather than run on if the server has become this slow.
TIME_LIMIT = 300.0


def measure(port: int, username: str, attempts: int) -> dict:
    """Alternate unknown-user and wrong-password sign-ins; return both medians and their ratio."""
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=30)
    times: dict[str, list[float]] = {"unknown_user": [], "wrong_password": []}
    statuses: set[int] = set()
    deadline = time.monotonic() + TIME_LIMIT
    try:
        # Untimed warm-up: the server builds its dummy hash on the first unknown user.
        for i in range(-2, attempts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"enumeration check still running after {TIME_LIMIT:g} s")
            kind = "unknown_user" if i % 2 else "wrong_password"
            name = f"nobody-{i}" if kind == "unknown_user" else username
            body = json.dumps({"username": name, "password": f"wrong-{i}"})
            started = time.perf_counter()
            conn.request("POST", SIGNIN, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if i >= 0:
                times[kind].append(time.perf_counter() - started)
                statuses.add(response.status)
    finally:
        conn.close()
    if statuses != {401}:
        raise RuntimeError(f"expected only 401 from failed sign-ins, got {sorted(statuses)}")
    unknown, wrong = statistics.median(times["unknown_user"]), statistics.median(times["wrong_password"])
    return {
        "attempts": attempts,
        "unknown_user_median_ms": unknown * 1e3,
        "wrong_password_median_ms": wrong * 1e3,
        "ratio": unknown / wrong,
        "ok": LOW <= unknown / wrong <= HIGH,
    }


def describe(result: dict) -> str:
    """Return the one-line verdict."""
    verdict = "PASS" if result["ok"] else "MISS"
    return (
        f"unknown user {result['unknown_user_median_ms']:.1f} ms / wrong password "
        f"{result['wrong_password_median_ms']:.1f} ms = {result['ratio']:.3f} "
        f"(target {LOW}..{HIGH}, {result['attempts']} attempts): {verdict}"
    )


def main() -> None:
    """Start Redis and signin, measure, print the verdict."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=200, help="sign-in attempts, alternating (default 200)")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_ATTEMPTS} attempts (CI)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (default 8)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="signin-bench-") as tmp,
        servers.redis_server() as redis,
        servers.signin_server(Path(tmp), redis.url, args.threads) as signin,
    ):
        print(describe(measure(signin.port, signin.username, QUICK_ATTEMPTS if args.quick else args.attempts)))


if __name__ == "__main__":
    main()
