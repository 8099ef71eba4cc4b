"""The schema by migrations: made new, adopted from before migrations, upgraded, and refused when behind or ahead.

Every test runs on SQLite, and on PostgreSQL when ``DATABASE_URL`` names one.
A database made before migrations is ``tests/fixtures/premigration.sqlite``
(made by ``signin init-db`` and ``users create`` at 0da7091, before this
change), or on PostgreSQL the tables of ``premigration-postgresql.sql``
(compiled from that version's models) holding the same rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from signin import create_app
from signin.store import schema
from signin.store.database import db
from tests.servers import PASSWORD, SIGNIN_COMMAND, empty_instance_env, free_port

FIXTURES = Path(__file__).with_name("fixtures")
TABLES = ("users", "services", "totp_factors", "recovery_codes")
HEAD = "0002"
BEHIND = "Error: the database schema is behind this signin (at 0001, needs 0002): run signin db upgrade\n"
UNVERSIONED = "Error: the database schema is behind this signin (made before migrations): run signin db upgrade\n"
AHEAD = (
    "Error: the database schema is ahead of this signin (at 0099; this signin knows up to 0002): "
    "install the signin that upgraded it (pip install --upgrade signin)\n"
)


@pytest.fixture
def url(tmp_path) -> str:
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path}/signin.db"


@pytest.fixture
def env(tmp_path, url, settings) -> dict[str, str]:
    return empty_instance_env(
        tmp_path, DATABASE_URL=url, REDIS_URL=settings["REDIS_URL"], SIGNIN_REDIS_PREFIX=settings["SIGNIN_REDIS_PREFIX"]
    )


def signin(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNIN_COMMAND, *arguments], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def rows(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = [tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]  # noqa: S608
    engine.dispose()
    return found


def fixture_tables() -> tuple[sa.MetaData, dict[str, list[dict]]]:
    """Return the fixture's tables, as SQLAlchemy reflects them, and their rows, typed by those tables."""
    engine = sa.create_engine(f"sqlite:///{FIXTURES / 'premigration.sqlite'}")
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        found = {name: [dict(row._mapping) for row in connection.execute(sa.select(metadata.tables[name]))] for name in TABLES}
    engine.dispose()
    return metadata, found


@pytest.fixture
def premigration(url, tmp_path) -> str:
    """Make the database at ``url`` one that signin made before migrations, holding the fixture's rows."""
    if url.startswith("sqlite"):
        shutil.copy(FIXTURES / "premigration.sqlite", sa.make_url(url).database)
        return url
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        lines = (FIXTURES / "premigration-postgresql.sql").read_text().splitlines()
        ddl = "\n".join(line for line in lines if not line.startswith("--"))
        for statement in ddl.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        metadata, found = fixture_tables()
        for table in TABLES:
            connection.execute(metadata.tables[table].insert(), found[table])
        for sequence, table in (("users_id_seq", "users"), ("services_id_seq", "services")):
            connection.execute(sa.text(f"SELECT setval('{sequence}', (SELECT max(id) FROM {table}))"))  # noqa: S608
    engine.dispose()
    return url


def upgraded_to(url: str, revision: str) -> None:
    engine = schema.upgrade_engine(url)
    with engine.begin() as connection:
        config = schema._config(connection)
        command.upgrade(config, revision)
    engine.dispose()


def differences(url: str) -> list:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), db.metadata)
    engine.dispose()
    return found


def test_init_db_makes_a_new_database_at_the_newest_revision(env, url):
    made = signin(env, "init-db")
    current = signin(env, "db", "current")

    assert made.returncode == 0
    assert made.stdout.splitlines()[:2] == [f"Made the database schema ({HEAD}).", "Database ready."]
    assert (current.returncode, current.stdout) == (0, f"{HEAD} (head): the schema of this signin.\n")
    assert rows(url, "alembic_version") == [(HEAD,)]
    assert differences(url) == []


def test_the_models_and_the_newest_revision_agree(url):
    schema.upgrade(url)

    assert differences(url) == []
    assert schema.head() == HEAD


def test_a_database_made_before_migrations_is_upgraded_in_place_every_row_kept(env, premigration, settings):
    before = {table: rows(premigration, table) for table in TABLES}
    said = signin(env, "db", "current")
    upgraded = signin(env, "db", "upgrade")
    again = signin(env, "db", "upgrade")

    assert said.stdout == f"none: {UNVERSIONED.removeprefix('Error: ')}"
    assert (upgraded.returncode, upgraded.stdout) == (
        0,
        f"Upgraded the database made before migrations to the schema {HEAD}; every row kept.\n",
    )
    assert again.stdout == f"The database schema is up to date ({HEAD}).\n"
    assert len(before["users"]) == 2
    assert [row[:6] for row in rows(premigration, "users")] == before["users"]
    assert [row[6:] for row in rows(premigration, "users")] == [(None, None), (None, None)]
    for table in TABLES[1:]:
        assert rows(premigration, table) == before[table]
    assert differences(premigration) == []
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": premigration})
    response = app.test_client().post("/api/v2/account/signin/", json={"username": "ALICE", "password": PASSWORD})
    assert response.status_code == 200
    with app.app_context():
        assert schema.standing().state == schema.OK
        db.session.remove()
        db.engine.dispose()
    assert rows(premigration, "users")[0][6] is not None  # last_sign_in_at


def test_init_db_upgrades_a_database_behind(env, url):
    upgraded_to(url, "0001")

    made = signin(env, "init-db")

    assert made.stdout.splitlines()[:2] == [f"Upgraded the database schema from 0001 to {HEAD}.", "Database ready."]
    assert rows(url, "alembic_version") == [(HEAD,)]


DOORS = {
    "signin serve": ["serve", "--port", "0"],
    "signin users list": ["users", "list"],
    "signin services list": ["services", "list"],
    "signin totp rotate-key": ["totp", "rotate-key"],
}


@pytest.mark.parametrize("door", DOORS)
def test_every_command_but_db_refuses_a_schema_behind_in_one_line(env, url, door):
    upgraded_to(url, "0001")

    result = signin(env, *DOORS[door])

    assert (result.returncode, result.stdout, result.stderr) == (2, "", BEHIND)


def test_a_database_made_before_migrations_is_refused_too(env, premigration):
    result = signin(env, "users", "list")

    assert (result.returncode, result.stderr) == (2, UNVERSIONED)


@pytest.mark.parametrize("door", ["wsgi", "signin.wsgi"])
def test_the_wsgi_entry_points_refuse_a_schema_behind_in_one_line(env, url, door):
    upgraded_to(url, "0001")

    result = subprocess.run(
        [sys.executable, "-c", f"from {door} import app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        check=False,
    )

    assert (result.returncode, result.stderr) == (2, "signin: " + BEHIND.removeprefix("Error: "))


def test_a_schema_ahead_is_refused_by_every_door_and_said_by_db_current(env, url):
    schema.upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()

    served = signin(env, "serve", "--port", str(free_port()))
    listed = signin(env, "users", "list")
    upgraded = signin(env, "db", "upgrade")
    current = signin(env, "db", "current")

    assert (served.returncode, served.stderr) == (2, AHEAD)
    assert (listed.returncode, listed.stderr) == (2, AHEAD)
    assert (upgraded.returncode, upgraded.stderr) == (2, AHEAD)
    assert (current.returncode, current.stdout) == (0, "0099: " + AHEAD.removeprefix("Error: "))
    assert rows(url, "alembic_version") == [("0099",)]


def test_readyz_names_the_command_for_a_schema_behind(url, settings):
    upgraded_to(url, "0001")
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": url})

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json() == {
        "error": "temporarily_unavailable",
        "error_description": f"Not ready: {BEHIND.removeprefix('Error: ').strip()}.",
        "checks": {"database": "schema_behind", "redis": "ok"},
    }
    with app.app_context():
        db.engine.dispose()


def test_another_applications_users_table_is_not_adopted(env, url):
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(200))"))
    engine.dispose()

    result = signin(env, "db", "upgrade")

    assert (result.returncode, result.stderr) == (
        2,
        "Error: the database has a users table signin did not make: give signin a database of its own\n",
    )
    engine = sa.create_engine(url)
    assert not sa.inspect(engine).has_table("alembic_version")
    engine.dispose()


def test_upgrades_run_at_once_upgrade_once(env, url):
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(signin(env, "db", "upgrade"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert [result.returncode for result in results] == [0, 0, 0, 0], [result.stderr for result in results]
    said = sorted(result.stdout for result in results)
    assert said == [f"Made the database schema ({HEAD}).\n"] + [f"The database schema is up to date ({HEAD}).\n"] * 3
    assert rows(url, "alembic_version") == [(HEAD,)]
