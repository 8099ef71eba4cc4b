"""Adopting a user base: ``signin users import`` of generated, already-hashed lines, and checks of each imported format.

Imports of 100,000 and 1,000,000 lines (bcrypt hashes, so that the import is
measured and not hashing) into SQLite and PostgreSQL, each as a process of its
own: lines per second and its peak resident memory (``ru_maxrss``). Then one
check of a wrong password against a hash of each format signin imports, with
the parameters its software uses by default, beside the configured method:
checks per second. PostgreSQL is ``DATABASE_URL`` if it names one, else a
throwaway server (tests/servers.py) if PostgreSQL is installed, else skipped.

Run alone: ``.venv/bin/python -m bench.imports [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import servers
from bench.report import Figure, judged
from tests.servers import PostgresServer

SIZES = (100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
# The target: a million lines within two minutes on SQLite, memory flat.
MILLION_SECONDS = 120.0
CHECKS = 5
PASSWORD, WRONG = "correct horse battery staple", "not the password"


def lines(path: Path, count: int) -> None:
    """Write ``count`` lines of users with one bcrypt hash (made once: the import never hashes it)."""
    import bcrypt

    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    with path.open("w") as file:
        for i in range(count):
            file.write(json.dumps({"username": f"user{i:07d}", "password_hash": stored, "active": True}) + "\n")


def run_import(env: dict[str, str], path: Path) -> tuple[float, int]:
    """Run ``signin users import`` on ``path``; return its seconds and its peak resident memory in MiB."""
    signin = str(servers.VENV_BIN / "signin")
    subprocess.run([signin, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)  # noqa: S603
    started = time.perf_counter()
    process = subprocess.Popen([signin, "users", "import", str(path)], env=env, stdout=subprocess.PIPE)  # noqa: S603
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    said = process.stdout.read().decode() if process.stdout else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"signin users import exited {process.returncode}: {said}")
    return seconds, usage.ru_maxrss // 1024


@contextlib.contextmanager
def postgres() -> Iterator[str | None]:
    """Yield a PostgreSQL URL to import into (an empty database of its own), or None."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgresql"):
        yield url
    elif PostgresServer.available():
        with PostgresServer() as server:
            yield server.url
    else:
        print("  (no PostgreSQL: DATABASE_URL names none, and none is installed; PostgreSQL skipped)")
        yield None


def emptied(url: str) -> None:
    """Drop signin's tables at ``url``, so that each import starts on an empty database."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in ("recovery_codes", "totp_factors", "services", "users", "alembic_version"):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()


def measure_imports(workdir: Path, redis_url: str, sizes: tuple[int, ...]) -> list[dict]:
    """Import each size into SQLite and PostgreSQL; return one result a run."""
    results = []
    with postgres() as postgres_url:
        for size in sizes:
            path = workdir / f"users-{size}.jsonl"
            lines(path, size)
            for database in ("sqlite", "postgresql"):
                if database == "postgresql" and postgres_url is None:
                    continue
                if database == "sqlite":
                    url = f"sqlite:///{workdir / f'import-{size}.db'}"
                else:
                    url = postgres_url
                    emptied(url)
                env = servers.bench_env(DATABASE_URL=url, REDIS_URL=redis_url)
                seconds, memory = run_import(env, path)
                result = {"database": database, "lines": size, "seconds": seconds, "peak_rss_mib": memory}
                print(f"  {database}: {size:,} lines in {seconds:.1f} s ({size / seconds:,.0f} lines/s), "
                      f"peak {memory} MiB", flush=True)
                results.append(result)
            path.unlink()
    return results


def field_hashes() -> dict[str, str]:
    """A hash of each format, as its software makes it by default."""
    import argon2
    import bcrypt
    from django.conf import settings
    from passlib import hash as libpass

    if not settings.configured:
        settings.configure(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"])
    from django.contrib.auth import hashers as django

    password = PASSWORD

    def by(hasher: django.BasePasswordHasher) -> str:
        return hasher.encode(password, hasher.salt())

    return {
        "Django pbkdf2_sha256 (1,000,000)": by(django.PBKDF2PasswordHasher()),
        "Django argon2 (m=100 MiB t=2 p=8)": by(django.Argon2PasswordHasher()),
        "Django bcrypt_sha256 (12)": by(django.BCryptSHA256PasswordHasher()),
        "Django scrypt (N=2^14 r=8 p=5)": by(django.ScryptPasswordHasher()),
        "bcrypt (12)": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode(),
        "argon2id (argon2-cffi's defaults)": argon2.PasswordHasher().hash(password),
        "PBKDF2-SHA256 PHC (passlib's 29,000)": libpass.pbkdf2_sha256.hash(password),
        "md5-crypt": libpass.md5_crypt.hash(password),
        "sha512-crypt (656,000 rounds)": libpass.sha512_crypt.hash(password),
        "phpass (WordPress's 2^13)": libpass.phpass.using(rounds=13).hash(password),
        "LDAP {SSHA}": libpass.ldap_salted_sha1.hash(password),
    }


def measure_checks(method: str, samples: int = CHECKS) -> dict[str, float]:
    """Return checks per second of a wrong password against each format's default hash, and the configured method."""
    from signin.rules.passwords import hash_password, verify_password

    hashes = {f"configured method ({method})": hash_password(PASSWORD, method), **field_hashes()}
    rates = {}
    for name, stored in hashes.items():
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            verify_password(stored, WRONG)
            times.append(time.perf_counter() - started)
        rates[name] = 1 / statistics.median(times)
        print(f"  {name}: {rates[name]:,.1f} checks/s", flush=True)
    return rates


def phase(workdir: Path, redis_url: str, method: str, sizes: tuple[int, ...]) -> tuple[dict, list[Figure]]:
    """Run both measures for ``bench.run``; return the data and the summary's figures."""
    print("== importing users", flush=True)
    runs = measure_imports(workdir, redis_url, sizes)
    print("== checks of each imported format", flush=True)
    rates = measure_checks(method)
    figures = []
    for run in runs:
        name = f"import of {run['lines']:,} hashed lines, {run['database']}"
        rate, seconds, memory = run["lines"] / run["seconds"], run["seconds"], run["peak_rss_mib"]
        measured = f"{rate:,.0f} lines/s ({seconds:.1f} s), peak {memory} MiB"
        if run["database"] == "sqlite" and run["lines"] == 1_000_000:
            target = f"{MILLION_SECONDS:g} s"
            figures.append(judged(name, measured, target, seconds / MILLION_SECONDS, "cli", high=1.0))
        else:
            figures.append(Figure(name, measured, "-", None))
    smallest = {run["database"]: run for run in sorted(runs, key=lambda run: -run["lines"])}
    for database, largest in {run["database"]: run for run in sorted(runs, key=lambda run: run["lines"])}.items():
        least = smallest[database]
        if least is not largest:
            figures.append(
                judged(
                    f"import peak memory, {largest['lines']:,} / {least['lines']:,} lines, {database}",
                    f"{largest['peak_rss_mib']} MiB against {least['peak_rss_mib']} MiB",
                    "flat",
                    largest["peak_rss_mib"] / least["peak_rss_mib"],
                    "cli",
                    high=1.2,
                )
            )
    configured = next(iter(rates.values()))
    for name, rate in rates.items():
        beside = f"configured method {configured:,.1f}"
        figures.append(Figure(f"sign-in checks/s, {name}", f"{rate:,.1f}", beside, rate / configured))
    return {"runs": runs, "checks_per_second": rates}, figures


def enumeration_figures(result: dict) -> list[Figure]:
    """Return the enumeration phase's figures for the imported users: each refusal's time against the unknown user's."""
    from bench import enumeration

    return [
        judged(
            f"{kind.removesuffix('_wrong_password')} imported user, wrong password / unknown-user time",
            f"{result[f'{kind}_median_ms']:.1f} ms median ({result['attempts']} alternating attempts)",
            f"unknown user {result['unknown_user_median_ms']:.1f} ms",
            result[f"{kind}_ratio"],
            "python",
            low=enumeration.LOW,
            high=enumeration.HIGH,
        )
        for kind in enumeration.IMPORTED
        if f"{kind}_ratio" in result
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"import {' and '.join(map(str, QUICK_SIZES))} lines")
    args = parser.parse_args()
    from signin.rules import passwords
    from signin.settings import DEFAULTS

    passwords.bound(4, 60.0)
    with tempfile.TemporaryDirectory(prefix="signin-bench-") as tmp, servers.redis_server() as redis:
        print("== import", flush=True)
        measure_imports(Path(tmp), redis.url, QUICK_SIZES if args.quick else SIZES)
        print("== checks of each imported format", flush=True)
        measure_checks(DEFAULTS["SIGNIN_PASSWORD_METHOD"])


if __name__ == "__main__":
    main()
