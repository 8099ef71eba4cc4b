"""The README and the pages under docs/ tell the truth: settings, commands and links."""

from __future__ import annotations

import itertools
import re
import runpy
from pathlib import Path
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from myst_parser.slugs import github_slugify, unique_slug

from signin.cli import main
from signin.settings import SETTINGS, shown
from tests.servers import code_blocks

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
