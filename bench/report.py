"""Figures (a measurement, the ceiling from the same run, a target, a verdict) and the files they go to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    """One line of the summary."""

    name: str
    measured: str
    ceiling: str
    ratio: float | None
    target: str = ""
    ok: bool | None = None
    tool: str = ""

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else "PASS" if self.ok else "MISS"


def judged(
    name: str,
    measured: str,
    ceiling: str,
    ratio: float,
    tool: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
) -> Figure:
    """Return a figure whose ratio must lie within [low, high] (either bound may be open)."""
    if low is not None and high is not None:
        target = f"{low:g}..{high:g}"
    elif low is not None:
        target = f">= {low:g}"
    else:
        target = f"<= {high:g}"
    ok = (low is None or ratio >= low) and (high is None or ratio <= high)
    return Figure(name, measured, ceiling, ratio, target, ok, tool)


def table(figures: list[Figure]) -> list[list[str]]:
    """Return the rows of the summary table, header first."""
    rows = [["figure", "measured", "ceiling (same run)", "ratio", "target", "result", "tool"]]
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.3f}"
        rows.append([f.name, f.measured, f.ceiling, ratio, f.target, f.verdict, f.tool])
    return rows


def text_table(figures: list[Figure]) -> str:
    """Return the summary as aligned plain text."""
    rows = table(figures)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def markdown(title: str, machine: dict, figures: list[Figure]) -> str:
    """Return the summary as a Markdown page."""
    rows = table(figures)
    lines = [f"# {title}", "", " · ".join(f"{key}: {value}" for key, value in machine.items()), ""]
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    misses = sum(f.ok is False for f in figures)
    lines += ["", f"{sum(f.ok is True for f in figures)} PASS, {misses} MISS.", ""]
    return "\n".join(lines)


def chart(path: Path, endpoints: list[tuple[str, float, float, float]], signin: list[tuple[int, float, float]]) -> bool:
    """Draw requests/s beside their ceilings; return False if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    labels = [label for label, *_ in endpoints]
    xs = range(len(endpoints))
    for offset, (index, name, color) in zip(
        (-0.27, 0, 0.27),
        ((1, "endpoint", "tab:blue"), (2, "Redis GET ceiling", "tab:orange"), (3, "bare Flask ceiling", "tab:gray")),
        strict=True,
    ):
        left.bar([x + offset for x in xs], [row[index] for row in endpoints], 0.27, label=name, color=color)
    left.set_xticks(list(xs), labels, fontsize=8)
    left.set_ylabel("requests/s")
    left.set_title("Token endpoints beside their ceilings (same tool)")
    left.legend(fontsize=8)
    cs = [str(c) for c, *_ in signin]
    right.bar([i - 0.2 for i in range(len(cs))], [rps for _, rps, _ in signin], 0.4, label="sign-in", color="tab:blue")
    right.bar(
        [i + 0.2 for i in range(len(cs))], [cap for *_, cap in signin], 0.4, label="hash ceiling", color="tab:orange"
    )
    right.set_xticks(range(len(cs)), cs)
    right.set_xlabel("concurrent clients")
    right.set_ylabel("sign-ins/s")
    right.set_title("Sign-in beside the password-hash ceiling")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(
    directory: Path,
    stem: str,
    title: str,
    machine: dict,
    figures: list[Figure],
    measurements: dict,
    endpoints: list[tuple[str, float, float, float]],
    signin: list[tuple[int, float, float]],
) -> list[Path]:
    """Write <stem>.json, <stem>.md and <stem>.png; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "title": title,
        "machine": machine,
        "figures": [dict(asdict(f), verdict=f.verdict) for f in figures],
        "measurements": measurements,
    }
    paths = [directory / f"{stem}.json", directory / f"{stem}.md"]
    paths[0].write_text(json.dumps(data, indent=2) + "\n")
    paths[1].write_text(markdown(title, machine, figures))
    png = directory / f"{stem}.png"
    if chart(png, endpoints, signin):
        paths.append(png)
    else:
        print("matplotlib is not installed: no chart")
    return paths
