"""The README tells the truth about the settings and the commands."""

from __future__ import annotations

import re
from pathlib import Path

from signin.cli import main
from signin.settings import SETTINGS, shown

README = (Path(__file__).parent.parent / "README.md").read_text()


def table_rows(section: str) -> dict[str, str]:
    """Return the first table of a README section, by its first cell."""
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in body.splitlines() if line.startswith("| `")]
    return {cells[0].removeprefix("| "): " | ".join(cells[1:]) for cells in rows}


def test_every_setting_is_in_the_configuration_table_with_its_default():
    rows = table_rows("Configuration")

    for setting in SETTINGS:
        row = rows[f"`{setting.variable}`"]
        plain = isinstance(setting.default, (int, float, str)) and not isinstance(setting.default, bool)
        if plain and setting.variable != "SIGNIN_HASH_CONCURRENCY":  # the box's cores
            assert row.startswith(f"`{shown(setting, setting.default)}` | "), setting.variable
    assert set(rows) == {f"`{s.variable}`" for s in SETTINGS} | {"`SIGNIN_INSTANCE_PATH`"}


def test_every_command_is_in_the_commands_table():
    # A row may name two: `signin users disable NAME` / `enable NAME`.
    rows = " ".join(table_rows("The `signin` command"))
    for name, command in main.commands.items():
        if name in ("shell", "routes"):
            continue
        for sub in getattr(command, "commands", None) or [""]:
            named = rf"`signin {name} {sub}\b" if sub else rf"`signin {name}\b"
            assert re.search(named, rows) or re.search(rf"`signin {name} [^`]*` / `{sub}\b", rows), f"{name} {sub}"
