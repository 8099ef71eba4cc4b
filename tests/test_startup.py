"""Start-up failures told in one line, never a traceback; a database without tables said so everywhere."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from signin.store.database import db
from tests.conftest import drop_tables
from tests.servers import HOST, free_port

SIGNIN = str(Path(sys.executable).with_name("signin"))


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNIN, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_unreachable_redis_is_one_line_for_the_server_and_the_cli(tmp_path):
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}

    served = run("serve", "--port", str(free_port()), **env)
    listed = run("users", "list", **env)

    assert (served.returncode, served.stdout) == (1, "")
    assert served.stderr.splitlines() == [f"Error: Redis at {env['REDIS_URL']} cannot be reached (ConnectionError)"]
    assert listed.returncode == 1
    assert listed.stderr.splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in listed.stderr


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path, redis_url):
    served = run("serve", "--port", str(free_port()), REDIS_URL=redis_url, DATABASE_URL="sqlite:////nonexistent/x/y.db")

    assert served.returncode == 1
    assert served.stderr == "Error: the SQLite database cannot be opened (unable to open database file)\n"


def test_a_busy_port_is_one_line_and_nothing_claims_to_serve(tmp_path, redis_url):
    env = {"REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    assert run("init-db", **env).returncode == 0
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        served = run("serve", "--port", str(port), **env)

    assert served.returncode == 1
    assert "Serving" not in served.stdout
    assert served.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_a_database_without_tables_makes_readyz_say_so(make_app):
    app = make_app()
    with app.app_context():
        drop_tables(db.engine)

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json() == {
        "error": "temporarily_unavailable",
        "error_description": "Not ready: the database is not initialised: run signin init-db.",
        "checks": {"database": "not_initialised", "redis": "ok"},
    }


def test_a_server_on_a_database_without_tables_starts_and_says_so(tmp_path, redis_url):
    env = {"REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    script = "from signin.serving import app_for_server; app_for_server()"

    result = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0
    assert "the database is not initialised: run signin init-db" in result.stderr


@pytest.mark.parametrize("command", [("users", "list"), ("services", "list"), ("totp", "rotate-key")])
def test_cli_commands_on_a_database_without_tables_say_so(tmp_path, redis_url, command):
    result = run(*command, REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{tmp_path}/empty.db")

    assert (result.returncode, result.stderr) == (1, "Error: the database is not initialised: run signin init-db\n")
