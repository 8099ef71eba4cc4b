"""The README and the pages under docs/ tell the truth: the settings and the commands."""

from __future__ import annotations

import re
from pathlib import Path

from signin.cli import main
from signin.settings import SETTINGS, shown

DOCS = Path(__file__).resolve().parent.parent / "docs"


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
