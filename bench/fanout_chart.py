"""The fan-out chart: delivered events/s against N, one line per system, with
subscriber CPU per event and p99 latency beside it.

    python bench/fanout_chart.py OUT.png RUN.json [RUN.json ...]

Several JSON files (from ``fanout.py --json``) are merged; a system/N pair in a
later file replaces the same pair from an earlier one.
"""

from __future__ import annotations

import json
import sys


def chart(rows: list[dict], path: str, title: str = "") -> str | None:
    """Write the chart of ``rows`` (fanout.py's median rows) to ``path``; a reason if it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    systems = list(dict.fromkeys(r["system"] for r in rows))
    subs = sorted(dict.fromkeys(r["subs"] for r in rows))

    def series(system: str, metric: str) -> tuple[list, list]:
        points = [(r["subs"], r[metric]) for r in rows if r["system"] == system and r.get(metric) is not None]
        points.sort()
        return [n for n, _ in points], [v for _, v in points]

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for system in systems:
        xs, ys = series(system, "rate")
        ax.plot(xs, ys, marker="o", label=system)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(subs)
    ax.set_xticklabels([str(n) for n in subs])
    ax.set_xlabel("subscriber processes N")
    ax.set_title("delivered events/s, all subscribers (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    width = 0.8 / max(1, len(systems))
    for ax, metric, label in ((axes[1], "sub_us", "subscriber CPU µs per event (log)"),
                              (axes[2], "p99_us", "p99 latency µs at a fixed rate")):
        for i, system in enumerate(systems):
            vals = []
            for n in subs:
                row = next((r for r in rows if r["system"] == system and r["subs"] == n), None)
                vals.append(row[metric] if row and row.get(metric) is not None else 0)
            ax.bar([j + i * width for j in range(len(subs))], vals, width, label=system)
        ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(subs))])
        ax.set_xticklabels([f"N={n}" for n in subs])
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    fig.suptitle(title or "fan-out: 1 publisher -> N subscribers on decky.*.state (median of rounds)")
    fig.tight_layout()
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
