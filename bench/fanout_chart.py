"""The fan-out chart: delivered events/s against N, one line per system, with
subscriber CPU per event and p99 latency beside it. Each system has its own
colour in every chart (``COLOURS``); an N where no system has a value for a
panel says "not measured" there.

    python bench/fanout_chart.py OUT.png RUN.json [RUN.json ...]

Several JSON files (from ``fanout.py --json``) are merged; a system/N pair in a
later file replaces the same pair from an earlier one.
"""

from __future__ import annotations

import json
import sys


# One colour per system, the same in every chart: decnet is always blue, its
# variants blues and greys, the peers their own. A system not listed gets one
# of the spare colours in order of first appearance.
COLOURS = {
    "decnet": "#1f77b4",
    "decnet-asyncio": "#9ecae1",
    "decnet-pure": "#08306b",
    "decnet-base": "#7f7f7f",
    "nats": "#2ca02c",
    "redis": "#d62728",
    "zmq": "#ff7f0e",
}
SPARE = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
ORDER = list(COLOURS)


def colours(systems: list[str]) -> dict[str, str]:
    """The colour of each of ``systems``: fixed for the known ones."""
    spare = iter(SPARE * (1 + len(systems) // len(SPARE)))
    return {s: COLOURS.get(s) or next(spare) for s in systems}


def chart(rows: list[dict], path: str, title: str = "") -> str | None:
    """Write the chart of ``rows`` (fanout.py's median rows) to ``path``; a reason if it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    found = list(dict.fromkeys(r["system"] for r in rows))
    systems = [s for s in ORDER if s in found] + [s for s in found if s not in ORDER]
    colour = colours(systems)
    subs = sorted(dict.fromkeys(r["subs"] for r in rows))

    def value(system: str, n: int, metric: str):
        row = next((r for r in rows if r["system"] == system and r["subs"] == n), None)
        return None if row is None else row.get(metric)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for system in systems:
        points = [(n, value(system, n, "rate")) for n in subs if value(system, n, "rate") is not None]
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", label=system, color=colour[system])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(subs)
    ax.set_xticklabels([str(n) for n in subs])
    ax.set_xlabel("subscriber processes N")
    ax.set_title("delivered events/s, all subscribers (log)")
    ax.grid(alpha=0.3, which="both")
    # One legend for the three panels, below them: inside a panel it hides points.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=len(systems), fontsize=9, frameon=False)
    width = 0.8 / max(1, len(systems))
    for ax, metric, label in ((axes[1], "sub_us", "subscriber CPU µs per event (log)"),
                              (axes[2], "p99_us", "p99 latency µs at a fixed rate")):
        centres = [j + width * (len(systems) - 1) / 2 for j in range(len(subs))]
        for i, system in enumerate(systems):
            # A missing value is no bar, not a bar of height 0.
            bars = [(j + i * width, value(system, n, metric)) for j, n in enumerate(subs)]
            bars = [(x, v) for x, v in bars if v is not None]
            ax.bar([x for x, _ in bars], [v for _, v in bars], width, label=system, color=colour[system])
        for centre, n in zip(centres, subs):
            if all(value(system, n, metric) is None for system in systems):
                ax.text(centre, 0.5, "not measured", transform=ax.get_xaxis_transform(),
                        ha="center", va="center", color="0.4", fontsize=9)
        ax.set_xticks(centres)
        ax.set_xticklabels([f"N={n}" for n in subs])
        ax.set_xlim(-width, len(subs) - 1 + width * len(systems))
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    fig.suptitle(title or "fan-out: 1 publisher -> N subscribers on decky.*.state (median of rounds)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, files = argv[0], argv[1:]
    merged: dict = {}
    for name in files:
        for row in json.load(open(name))["medians"]:
            merged[row["system"], row["subs"]] = row
    why = chart(list(merged.values()), out)
    print(why or f"wrote {out}")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
