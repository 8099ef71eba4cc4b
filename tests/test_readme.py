"""The README and the pages under docs/ tell the truth: settings, commands, links, and the curl tour."""

from __future__ import annotations

import base64
import itertools
import json
import re
import runpy
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from markdown_it import MarkdownIt
from myst_parser.slugs import github_slugify, unique_slug

from signin.cli import main
from signin.settings import SETTINGS, shown
from tests.servers import (
    HOST,
    SigninServe,
    code_blocks,
    empty_instance_env,
    http_call,
    kill_embedded_redis,
    run_signin,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# The heading levels that get anchors, as docs/conf.py tells MyST.
HEADING_ANCHORS = runpy.run_path(str(DOCS / "conf.py"))["myst_heading_anchors"]
MARKDOWN = MarkdownIt("commonmark").enable("table")


def table_rows(page: str) -> dict[str, str]:
    """Return the table rows of a page under docs/ (``configuration.md``), by their first cell."""
    body = (DOCS / page).read_text()
    rows = [line.split(" | ") for line in body.splitlines() if line.startswith("| `")]
    return {cells[0].removeprefix("| "): " | ".join(cells[1:]) for cells in rows}


def test_every_setting_is_in_the_configuration_table_with_its_default():
    rows = table_rows("configuration.md")

    for setting in SETTINGS:
        row = rows[f"`{setting.variable}`"]
        plain = isinstance(setting.default, (int, float, str)) and not isinstance(setting.default, bool)
        if plain and setting.variable != "SIGNIN_HASH_CONCURRENCY":  # the box's cores
            assert row.startswith(f"`{shown(setting, setting.default)}` | "), setting.variable
    assert set(rows) == {f"`{s.variable}`" for s in SETTINGS} | {"`SIGNIN_INSTANCE_PATH`"}


def test_every_command_is_in_the_commands_table():
    # A row may name two: `signin users disable NAME` / `enable NAME`.
    rows = " ".join(table_rows("cli.md"))
    for name, command in main.commands.items():
        if name in ("shell", "routes"):
            continue
        for sub in getattr(command, "commands", None) or [""]:
            named = rf"`signin {name} {sub}\b" if sub else rf"`signin {name}\b"
            assert re.search(named, rows) or re.search(rf"`signin {name} [^`]*` / `{sub}\b", rows), f"{name} {sub}"


def anchors(page: Path) -> set[str]:
    """Return the anchors of a Markdown page's headings, as MyST (and GitHub) make them."""
    tokens = MARKDOWN.parse(page.read_text())
    slugs: set[str] = set()
    for heading, inline in itertools.pairwise(tokens):
        if heading.type == "heading_open" and int(heading.tag[1:]) <= HEADING_ANCHORS:
            title = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
            slugs.add(unique_slug(github_slugify(title), slugs))
    return slugs


def links(page: Path) -> list[str]:
    """Return the targets of a Markdown page's links and images, in order."""
    targets = []
    for token in MARKDOWN.parse(page.read_text()):
        for child in token.children or []:
            target = child.attrs.get("href") or child.attrs.get("src")
            if child.type in ("link_open", "image") and isinstance(target, str):
                targets.append(target)
    return targets


def test_every_relative_link_of_the_readme_names_a_file_and_heading_that_exist():
    relative = [target for target in links(README) if not urlsplit(target).scheme]
    assert any("#" in target for target in relative), "the README links to no heading: is the parsing broken?"

    for target in relative:
        path, _, anchor = target.partition("#")
        file = (ROOT / path).resolve() if path else README
        assert file.is_relative_to(ROOT) and file.is_file(), f"README.md links to {target}: no such file"
        if anchor:
            assert file.suffix == ".md", f"README.md links to {target}: a heading in a file that has none"
            assert anchor in anchors(file), f"README.md links to {target}: no such heading in {path or 'README.md'}"


def test_the_readmes_links_to_the_docs_pages_cover_every_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}

    assert set(DOCS.glob("*.md")) <= linked


def test_the_doors_tables_command_lines_are_the_ones_the_deploying_page_shows_and_the_tests_run():
    readme = README.read_text()
    table = readme.split("## Ways to serve it", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"`((?:gunicorn|waitress-serve) [^`]*)`", table)
    shown_lines = {line for block in code_blocks("docs/deploying.md", "sh") for line in block.splitlines()}

    assert len(commands) == 2
    for command in commands:
        assert command in shown_lines, command


# The curl tour, pasted into bash as a reader would, against a real `signin serve`.

PASTED_PASSWORD = "PASSWORD='paste the admin password here'"
PASTED_SECRET = "SECRET='paste it here'"
# In the terminal, curl also notes each answer: its status, method and URL, and its body (base64).
CURL_NOTES = r"""
curl() {
    local answer
    answer=$(command curl -w '\n%{http_code} %{method} %{url_effective}' "$@")
    printf '%s\n' "${answer%$'\n'*}"
    printf '%s %s\n' "${answer##*$'\n'}" "$(printf '%s' "${answer%$'\n'*}" | base64 -w0)" >>"$CURL_NOTES"
}
"""


@dataclass
class Answer:
    """One answer curl got in the tour."""

    status: int
    method: str
    path: str
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


class Terminal:
    """bash, into which text is pasted; each paste runs to its end and returns what it printed."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.output = directory / "terminal.out"
        self.notes = directory / "curl.notes"
        self.notes.touch()
        with self.output.open("wb") as output, (directory / "terminal.err").open("wb") as errors:
            self.process = subprocess.Popen(
                ["bash"],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=errors,
                cwd=directory,
                env={**env, "CURL_NOTES": str(self.notes)},
                text=True,
            )
        self.read = 0

    def paste(self, text: str) -> str:
        """Run text in the shell, as if pasted; return what it printed on standard output."""
        assert self.process.stdin is not None
        marker = uuid.uuid4().hex
        pasted = self.directory / f"{marker}.sh"
        pasted.write_text(text)
        # Sourced, so its variables stay for the next paste; commands read no further pastes as their input.
        self.process.stdin.write(f"source {pasted} </dev/null; echo; echo {marker}\n")
        self.process.stdin.flush()
        wait_for(lambda: marker in self.output.read_text(), 60, "the pasted text to run", log=self.output)
        printed = self.output.read_text()[self.read :].split(f"\n{marker}\n", 1)[0]
        self.read = self.output.read_text().index(marker) + len(marker) + 1
        return printed

    def answers(self) -> list[Answer]:
        """Return every answer curl got so far, in order."""
        answers = []
        for line in self.notes.read_text().splitlines():
            status, method, url, *body = line.split(" ")
            answers.append(Answer(int(status), method, urlsplit(url).path, base64.b64decode("".join(body)).decode()))
        return answers

    def close(self) -> None:
        """End the shell: it exits at the end of its input, or is killed if a command still runs."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[SigninServe, str]]:
    """``signin serve`` as ``make run`` starts it, on a fresh instance folder; and the admin's password it printed."""
    env = empty_instance_env(tmp_path, RATELIMIT_ENABLED="true")
    printed = run_signin(env, "init-db", "--admin").stdout
    assert "Created user 'admin'. Its password, shown only this once:" in printed
    try:
        with SigninServe(env, threads=8) as server:
            yield server, printed.splitlines()[-1]
    finally:
        kill_embedded_redis(tmp_path / "instance")


@pytest.fixture
def terminal(tmp_path: Path, served: tuple[SigninServe, str]) -> Iterator[Terminal]:
    """A terminal in a checkout: ``.venv`` is the virtual environment running the tests."""
    directory = tmp_path / "checkout"
    directory.mkdir()
    (directory / ".venv").symlink_to(Path(sys.executable).parent.parent)
    shell = Terminal(directory, served[0].env)
    shell.paste(CURL_NOTES)
    yield shell
    shell.close()


def pasteable(block: str, port: int, scratch: Path) -> str:
    """Return a block of the tour as pasted against this server; its files in the test's own folder, not /tmp."""
    assert block.count(f"{HOST}:8000") >= 1
    return block.replace(f"{HOST}:8000", f"{HOST}:{port}").replace("/tmp/", f"{scratch}/")


def test_the_readmes_curl_tour_answers_as_it_says(served, terminal, tmp_path):
    server, password = served
    blocks = code_blocks("README.md", "sh")
    (tour,) = [block for block in blocks if PASTED_PASSWORD in block]
    (services,) = [block for block in blocks if PASTED_SECRET in block]
    add_service, rest = services.split(PASTED_SECRET + "\n")

    terminal.paste(pasteable(tour, server.port, tmp_path).replace(PASTED_PASSWORD, f"PASSWORD='{password}'"))
    secret = terminal.paste(add_service).strip().splitlines()[-1]
    terminal.paste(f"SECRET='{secret}'\n" + pasteable(rest, server.port, tmp_path))

    answers = terminal.answers()
    account = "/api/v2/account/"
    assert [(answer.method, answer.path.removeprefix(account), answer.status) for answer in answers] == [
        ("POST", "signin/", 200),
        ("GET", "me/", 200),
        ("POST", "refresh/", 200),
        ("GET", "sessions/", 200),
        ("DELETE", "sessions/", 200),
        ("POST", "password/", 204),
        ("POST", "signout/", 204),
        ("POST", "introspect/", 200),
        ("POST", "revoke/", 200),
    ]
    signin, me, refresh, sessions, others_ended, password_changed, signout, introspect, revoke = answers
    token = signin.json()["token"]
    assert set(token) == {"access_token", "expires_in", "token_type", "refresh_token", "client_id", "scope"}
    assert (token["expires_in"], token["token_type"], token["client_id"], token["scope"]) == (
        "604800",
        "Bearer",
        "signin",
        "read write",
    )
    assert me.json()["username"] == "admin"
    assert refresh.json()["token"]["access_token"] != token["access_token"]
    assert [session["current"] for session in sessions.json()["sessions"]] == [True]
    assert others_ended.json() == {"ended": 0}
    assert password_changed.body.startswith("HTTP/1.1 204")
    assert signout.body.startswith("HTTP/1.1 204")
    assert introspect.json() == {"active": False}
    assert revoke.json() == {}
    # The new password is the admin's now.
    new = {"username": "admin", "password": "a long passphrase of my own"}
    assert http_call(server.port, "POST", "/api/v2/account/signin/", new)[0] == 200
