"""Does sign-in timing tell who exists, or who has TOTP? Unknown user, wrong password, TOTP user with a wrong code.

And users imported with a cheap hash ({SSHA}, md5-crypt): their wrong passwords
must cost what an unknown user costs (a dummy check of the configured method).

Run alone: ``.venv/bin/python -m bench.enumeration [--attempts 200 | --quick]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import servers

SIGNIN = "/api/v2/account/signin/"
LOW, HIGH = 0.9, 1.1
QUICK_ATTEMPTS = 60
# The user the TOTP kind signs in as.
TOTP_USER = "bench-totp"
# Give up rather than run on if the server has become this slow.
TIME_LIMIT = 300.0


KINDS = ("unknown_user", "wrong_password", "totp_wrong_code")
# Users imported with a cheap hash of another format, and the kind of attempt that refuses each.
IMPORTED = {"ssha_wrong_password": "bench-ssha", "md5crypt_wrong_password": "bench-md5crypt"}


def import_cheap_users(cli: Callable[..., str], password: str) -> None:
    """Import the users of ``IMPORTED`` with ``signin users import``, their hashes made by libpass."""
    from passlib import hash as libpass

    made = {"bench-ssha": libpass.ldap_salted_sha1.hash(password), "bench-md5crypt": libpass.md5_crypt.hash(password)}
    lines = "".join(json.dumps({"username": name, "password_hash": stored}) + "\n" for name, stored in made.items())
    cli("users", "import", "-", stdin=lines)


def totp_user(port: int, username: str, password: str) -> None:
    """Turn TOTP on for a user (signed in over HTTP, enrolled, confirmed with a code computed here)."""
    import pyotp

    token = _post(port, SIGNIN, {"username": username, "password": password})["token"]["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    secret = _post(port, "/api/v2/account/totp/", {"password": password}, bearer)["secret"]
    _post(port, "/api/v2/account/totp/confirm/", {"code": pyotp.TOTP(secret).now()}, bearer)


def _post(port: int, path: str, body: dict, headers: dict[str, str] | None = None) -> dict:
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=30)
    try:
        conn.request(
            "POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"POST {path}: {response.status} {answer}")
    return answer


def measure(
    port: int,
    username: str,
    attempts: int,
    totp_username: str | None = None,
    password: str = "",
    imported: bool = False,
) -> dict:
    """Alternate failing sign-ins of each kind; return each median and their ratios to the wrong password's.

    The TOTP kind (with ``totp_username``, a user who has TOTP) sends that user's right password and a wrong code.
    With ``imported``, the users of ``IMPORTED`` are refused too, each judged against the unknown user.
    """
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=30)
    kinds = (*(KINDS if totp_username else KINDS[:2]), *(IMPORTED if imported else ()))
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    statuses: set[int] = set()
    deadline = time.monotonic() + TIME_LIMIT
    try:
        # Untimed warm-up: the server builds its dummy hash on the first unknown user.
        for i in range(-len(kinds), attempts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"enumeration check still running after {TIME_LIMIT:g} s")
            kind = kinds[i % len(kinds)]
            body = {
                "unknown_user": {"username": f"nobody-{i}", "password": f"wrong-{i}"},
                "wrong_password": {"username": username, "password": f"wrong-{i}"},
                "totp_wrong_code": {"username": totp_username, "password": password, "otp": f"{i % 1000:06d}x"[:6]},
                **{name: {"username": IMPORTED[name], "password": f"wrong-{i}"} for name in IMPORTED},
            }[kind]
            started = time.perf_counter()
            conn.request("POST", SIGNIN, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if i >= 0:
                times[kind].append(time.perf_counter() - started)
                statuses.add(response.status)
    finally:
        conn.close()
    if statuses != {401}:
        raise RuntimeError(f"expected only 401 from failed sign-ins, got {sorted(statuses)}")
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    wrong = medians["wrong_password"]
    result: dict = {"attempts": attempts, **{f"{kind}_median_ms": median * 1e3 for kind, median in medians.items()}}
    result["ratio"] = medians["unknown_user"] / wrong
    result["ok"] = LOW <= result["ratio"] <= HIGH
    if totp_username:
        result["totp_ratio"] = medians["totp_wrong_code"] / wrong
        result["ok"] = result["ok"] and LOW <= result["totp_ratio"] <= HIGH
    for kind in IMPORTED if imported else ():
        result[f"{kind}_ratio"] = medians[kind] / medians["unknown_user"]
        result["ok"] = result["ok"] and LOW <= result[f"{kind}_ratio"] <= HIGH
    return result


def describe(result: dict) -> str:
    """Return the one-line verdict."""
    verdict = "PASS" if result["ok"] else "MISS"
    totp = (
        f", TOTP user with a wrong code {result['totp_wrong_code_median_ms']:.1f} ms = {result['totp_ratio']:.3f}"
        if "totp_ratio" in result
        else ""
    )
    imported = "".join(
        f", {kind.removesuffix('_wrong_password')} user with a wrong password {result[f'{kind}_median_ms']:.1f} ms "
        f"= {result[f'{kind}_ratio']:.3f} of the unknown user"
        for kind in IMPORTED
        if f"{kind}_ratio" in result
    )
    return (
        f"unknown user {result['unknown_user_median_ms']:.1f} ms / wrong password "
        f"{result['wrong_password_median_ms']:.1f} ms = {result['ratio']:.3f}{totp}{imported} "
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
        signin.cli("users", "create", TOTP_USER, "--password-stdin", stdin=signin.password + "\n")
        totp_user(signin.port, TOTP_USER, signin.password)
        import_cheap_users(signin.cli, signin.password)
        attempts = QUICK_ATTEMPTS if args.quick else args.attempts
        print(describe(measure(signin.port, signin.username, attempts, TOTP_USER, signin.password, imported=True)))


if __name__ == "__main__":
    main()
