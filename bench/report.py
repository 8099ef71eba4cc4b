"""Figures (a measurement, the ceiling from the same run, a target, a verdict) and the files they go to.

``python -m bench.report bench/results/<date>.json`` draws the chart and
writes the Markdown again from a results file, without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


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


def markdown(title: str, machine: dict, figures: list[Figure], chart_name: str | None = None) -> str:
    """Return the summary as a Markdown page, showing the chart file ``chart_name`` if given."""
    rows = table(figures)
    lines = [f"# {title}", "", " · ".join(f"{key}: {value}" for key, value in machine.items()), ""]
    if chart_name:
        lines += [f"![the figures as bars]({chart_name})", ""]
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    misses = sum(f.ok is False for f in figures)
    lines += ["", f"{sum(f.ok is True for f in figures)} PASS, {misses} MISS.", ""]
    return "\n".join(lines)


# Colours by role, the same in every panel: what signin did, and what it is judged against.
MEASURED, CEILING, BARE, OTHER = "tab:blue", "tab:orange", "tab:gray", "tab:green"
Series = tuple[str, list[float], str]


def chart_title(title: str, machine: dict) -> str:
    """Return the chart's title: the run's, then the box and the settings every bar depends on."""
    settings = [
        machine.get("cpu", "unknown CPU"),
        f"{machine.get('cores', '?')} cores",
        f"password hash {machine.get('method', '?')}",
        f"waitress {machine.get('waitress_threads', '?')} threads",
    ]
    return f"{title}\n" + " · ".join(str(setting) for setting in settings)


def value_text(value: float | None, unit: str = "") -> str:
    """Return a bar's label: about three significant digits, thousands separated."""
    if value is None or math.isnan(value):
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + unit


def grouped_bars(axes: Any, groups: list[str], series: list[Series], unit: str = "") -> None:
    """Draw one bar per series in each group, each labelled with its value."""
    width = 0.8 / len(series)
    for i, (name, values, color) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        heights = [math.nan if value is None else value for value in values]
        bars = axes.bar([x + offset for x in range(len(groups))], heights, width, label=name, color=color)
        labels = [value_text(value, unit) for value in values]
        axes.bar_label(bars, labels=labels, fontsize=6.5, rotation=90, padding=2)
    axes.set_xticks(range(len(groups)), groups, fontsize=7.5)
    axes.legend(fontsize=7, loc="upper right")
    axes.margins(y=0.25)  # headroom for the labels above the tallest bar


def missing(axes: Any, title: str) -> None:
    """Mark a panel whose measurements this results file lacks."""
    axes.set_title(title, fontsize=10)
    axes.text(0.5, 0.5, "not in this results file", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def endpoints_panel(axes: Any, data: dict) -> None:
    """Token endpoints' req/s beside the Redis GET ceiling paired with them and the bare Flask one."""
    title = "Token endpoints beside their ceilings (same tool, same connections)"
    points = data.get("endpoints")
    if not isinstance(points, list):
        return missing(axes, title)
    groups = [f"{p['endpoint'].split(' (')[0]}\n{p['connections']} conns ({p['tool']})" for p in points]
    grouped_bars(
        axes,
        groups,
        [
            ("endpoint", [p["rps"] for p in points], MEASURED),
            ("Redis GET ceiling (median pair)", [p["ceiling"]["rps"] for p in points], CEILING),
            ("bare Flask ceiling", [p["bare_rps"] for p in points], BARE),
        ],
    )
    axes.set_ylabel("requests/s")
    axes.set_title(title, fontsize=10)


def signin_panel(axes: Any, data: dict) -> None:
    """Sign-ins/s at each client count beside the password-hash ceiling."""
    title = "Sign-in beside the password-hash ceiling"
    points = data.get("signin")
    if not points:
        return missing(axes, title)
    grouped_bars(
        axes,
        list(points),
        [
            # Answered 200: a sign-in shed with 503 (bounded password checks) signed nobody in.
            ("sign-in", [p.get("ok_rps", p["rps"]) for p in points.values()], MEASURED),
            ("hash ceiling", [p["ceiling"] for p in points.values()], CEILING),
        ],
    )
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("sign-ins/s")
    axes.set_title(title, fontsize=10)


def latency_panel(axes: Any, data: dict) -> None:
    """p50 and p99 of the token endpoints, and of GET me quiet and beside a sign-in flood (log scale)."""
    title = "Latency: token endpoints, and GET me beside a sign-in flood"
    points = data.get("endpoints") if isinstance(data.get("endpoints"), list) else []
    rows = [(f"{p['endpoint'].split(' (')[0]}\n{p['connections']} conns ({p['tool']})", p) for p in points]
    flood = data.get("flood")
    if flood:
        quiet, flooded = flood["quiet"], flood["flooded"]
        rows += [
            (f"GET me quiet\n{quiet['connections']} conns ({quiet['tool']})", quiet),
            (f"GET me beside\n{flood['clients']} signing in ({flooded['tool']})", flooded),
        ]
    if not rows:
        return missing(axes, title)
    grouped_bars(
        axes,
        [label for label, _ in rows],
        [("p50", [p["p50_ms"] for _, p in rows], MEASURED), ("p99", [p["p99_ms"] for _, p in rows], CEILING)],
    )
    axes.set_yscale("log")
    axes.set_ylabel("ms (log scale)")
    axes.set_title(title, fontsize=10)


def memory_panel(axes: Any, data: dict) -> None:
    """Redis bytes per live session beside the payload floor and the target."""
    title = "Redis memory per live session"
    memory = data.get("memory")
    if not memory:
        return missing(axes, title)
    if memory.get("max_bytes_per_session"):
        # Drawn first, so that grouped_bars' legend names it too.
        target = memory["max_bytes_per_session"]
        axes.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target <= {target} B")
    series = [("measured", [memory["bytes_per_session"]], MEASURED)]
    series.append(("payload floor (key names + values)", [memory["payload_bytes_per_session"]], CEILING))
    grouped_bars(axes, [f"{memory['sessions']:,} sessions, {memory['sessions_per_user']}/user"], series, " B")
    axes.set_ylabel("bytes per session")
    axes.set_title(title, fontsize=10)


def gunicorn_panel(axes: Any, data: dict) -> None:
    """GET me under one signin serve and under gunicorn, at each connection count."""
    title = "GET me: signin serve vs gunicorn (median pair)"
    gunicorn = data.get("gunicorn")
    if not gunicorn:
        return missing(axes, title)
    points = gunicorn["points"]
    grouped_bars(
        axes,
        [f"{p['connections']} conns (x{p['ratio']:.2f})\n{worker_split(p['gunicorn'])}" for p in points],
        [
            (f"signin serve ({gunicorn['serve_threads']} threads)", [p["serve"]["rps"] for p in points], MEASURED),
            (
                f"gunicorn -w {gunicorn['workers']} --threads {gunicorn['threads']}",
                [p["gunicorn"]["rps"] for p in points],
                OTHER,
            ),
        ],
    )
    axes.set_ylabel("requests/s")
    axes.set_title(title, fontsize=10)


def worker_split(result: dict) -> str:
    """Say how gunicorn's workers held the connections of a run, if the results file knows."""
    split = result.get("connections_per_worker")
    return f"connections per worker {'+'.join(map(str, split))}" if split else ""


def durability_panel(axes: Any, data: dict) -> None:
    """POST refresh against a Redis with an append-only file beside one without, per fsync policy."""
    title = "POST refresh by Redis persistence (median pair)"
    durability = data.get("durability")
    if not durability:
        return missing(axes, title)
    points = durability["points"]
    grouped_bars(
        axes,
        [f"appendfsync {p['appendfsync']}\n(x{p['ratio']:.2f})" for p in points],
        [
            ("no persistence", [p["none"]["rps"] for p in points], MEASURED),
            ("append-only file", [p["durable"]["rps"] for p in points], OTHER),
        ],
    )
    axes.set_ylabel(f"requests/s at {durability['connections']} connections")
    axes.set_title(title, fontsize=10)


def log_scale(axes: Any, label: str) -> None:
    """Put a panel on a log scale, with headroom for the labels above its tallest bar."""
    axes.set_yscale("log")
    low, high = axes.get_ylim()
    axes.set_ylim(low, high * 4)
    axes.set_ylabel(label)


def listing_panel(axes: Any, data: dict) -> None:
    """Listing a user's sessions, over HTTP and in the store, by how many the user holds, beside linear growth."""
    title = "Listing a user's sessions (GET sessions p50; TokenStore.sessions)"
    listing = data.get("listing")
    if not listing:
        return missing(axes, title)
    sizes = [str(n) for n in listing["sizes"]]
    http = [listing["http_p50_seconds"][n] * 1e3 for n in sizes]
    store = [listing["store_seconds"][n] * 1e3 for n in sizes]
    # Linear growth from the middle size: what the largest is judged against.
    middle, largest = sizes[len(sizes) // 2], int(sizes[-1])
    linear = [None] * (len(sizes) - 1) + [listing["http_p50_seconds"][middle] * 1e3 * largest / int(middle)]
    # Drawn first, so that grouped_bars' legend names it too.
    axes.axhline(listing["me_p50_seconds"] * 1e3, color=BARE, linestyle=":", linewidth=1, label="GET me p50")
    grouped_bars(
        axes,
        [f"{n} session{'s' if n != '1' else ''}" for n in sizes],
        [
            ("GET sessions p50 (HTTP, 1 connection)", http, MEASURED),
            ("TokenStore.sessions median", store, OTHER),
            (f"HTTP linear from {middle}", linear, CEILING),
        ],
        " ms",
    )
    log_scale(axes, "ms (log scale)")
    axes.set_title(title, fontsize=10)


def revoke_panel(axes: Any, data: dict) -> None:
    """Signout everywhere (TokenStore.revoke_user) by how many sessions the user holds, beside linear growth."""
    title = "Signout everywhere (TokenStore.revoke_user)"
    revoke = data.get("revoke_user")
    if not revoke:
        return missing(axes, title)
    seconds = revoke["seconds"]
    sizes = list(seconds)
    middle, largest = sizes[len(sizes) // 2], int(sizes[-1])
    linear = [None] * (len(sizes) - 1) + [seconds[middle] * 1e3 * largest / int(middle)]
    grouped_bars(
        axes,
        [f"{int(n):,} session{'s' if n != '1' else ''}" for n in sizes],
        [("measured", [seconds[n] * 1e3 for n in sizes], MEASURED), (f"linear from {middle}", linear, CEILING)],
        " ms",
    )
    log_scale(axes, "ms (log scale)")
    axes.set_title(title, fontsize=10)


def policy_panel(axes: Any, data: dict) -> None:
    """The password policy's check per call beside one password check (log scale)."""
    title = "Password policy check vs one password hash"
    policy = data.get("policy")
    if not policy:
        return missing(axes, title)
    labels = [f"policy, {policy['lengths'][label]} chars" for label in policy["seconds_per_call"]]
    values = [seconds * 1e6 for seconds in policy["seconds_per_call"].values()]
    grouped_bars(
        axes,
        [*labels, f"hash\n{policy['hash_method']}"],
        [("microseconds per call", [*values, policy["hash_seconds"] * 1e6], MEASURED)],
        " us",
    )
    log_scale(axes, "us per call (log scale)")
    axes.set_title(title, fontsize=10)


# Rows of panels; the first column is the widest, for the panels with the most bars.
LAYOUT: tuple[tuple[Callable[[Any, dict], None], ...], ...] = (
    (endpoints_panel, signin_panel, memory_panel),
    (latency_panel, gunicorn_panel, durability_panel),
    (listing_panel, revoke_panel, policy_panel),
)


def chart(path: Path, title: str, machine: dict, measurements: dict) -> bool:
    """Draw every panel from a run's measurements into a PNG; return False if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(LAYOUT), len(LAYOUT[0])
    figure, grid = plt.subplots(rows, columns, figsize=(20, 5.25 * rows), gridspec_kw={"width_ratios": [5, 3, 2]})
    for panels, row in zip(LAYOUT, grid, strict=True):
        for panel, axes in zip(panels, row, strict=True):
            panel(axes, measurements)
    figure.suptitle(chart_title(title, machine), fontsize=12)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def render(json_path: Path, data: dict) -> list[Path]:
    """Write the Markdown and the chart beside a results JSON, from what it holds; return the paths written."""
    figures = [Figure(**{f.name: row[f.name] for f in fields(Figure)}) for row in data["figures"]]
    png, md = json_path.with_suffix(".png"), json_path.with_suffix(".md")
    drawn = chart(png, data["title"], data["machine"], data["measurements"])
    if not drawn:
        print("matplotlib is not installed: no chart")
    md.write_text(markdown(data["title"], data["machine"], figures, png.name if drawn else None))
    return [md, png] if drawn else [md]


def write(
    directory: Path, stem: str, title: str, machine: dict, figures: list[Figure], measurements: dict
) -> list[Path]:
    """Write <stem>.json, then <stem>.md and <stem>.png from it; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "title": title,
        "machine": machine,
        "figures": [dict(asdict(f), verdict=f.verdict) for f in figures],
        "measurements": measurements,
    }
    path = directory / f"{stem}.json"
    text = json.dumps(data, indent=2) + "\n"
    path.write_text(text)
    # Drawn from the JSON as written, so that python -m bench.report draws the very same chart.
    return [path, *render(path, json.loads(text))]


def main() -> None:
    """Draw the chart and write the Markdown again from a results file."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path, help="a results file, bench/results/<date>.json")
    args = parser.parse_args()
    paths = render(args.results, json.loads(args.results.read_text()))
    print("Wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    main()
