#!/usr/bin/env python3
"""Draw docs/federation.png: DECNET hosts (a broker and a bridge each)
joined by a 3-node NATS cluster, and a site whose hosts reach the cluster
through one leaf node. Needs matplotlib (the ``bench`` extra).

    .venv/bin/python bench/federation_picture.py [OUT.png]     # default: docs/federation.png
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "docs", "federation.png")

EXPORT = "#c0392b"   # local topic -> NATS subject
IMPORT = "#1f6fb2"   # NATS subject -> local topic
ROUTE = "#555555"    # NATS's own links: cluster routes, the leafnode connection
HOST_BG, NATS_BG, SITE_BG = "#f4f4f4", "#fff4dc", "#eef7ee"


def box(ax, x, y, w, h, text, face, edge="#333333", size=10, weight="normal", lw=1.2, z=1):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=face, edgecolor=edge,
                                linewidth=lw, zorder=z))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight, zorder=z + 1)


def arrow(ax, a, b, color, style="-|>", lw=1.8, rad=0.0, ls="-", z=2):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=14, color=color, linewidth=lw,
                                 linestyle=ls, connectionstyle=f"arc3,rad={rad}", shrinkA=1, shrinkB=1, zorder=z))


W, H = 2.5, 1.75


def host(ax, x, y, name, *roles, w=W):
    """A host: its box, the broker and the bridge, the patterns it bridges."""
    box(ax, x, y, w, H, "", HOST_BG)
    ax.text(x + w / 2, y + H - 0.2, name, ha="center", va="center", fontsize=10.5, weight="bold")
    for i, role in enumerate(roles):
        ax.text(x + w / 2, y + H - 0.45 - 0.2 * i, role, ha="center", va="center", fontsize=8, color="#444444",
                family="monospace")
    inner = (w - 0.4) / 2
    box(ax, x + 0.12, y + 0.12, inner, 0.62, "broker\n(decnet bus)", "white", size=8, z=3)
    box(ax, x + w - 0.12 - inner, y + 0.12, inner, 0.62, "bridge", "white", size=9, weight="bold", z=3)
    arrow(ax, (x + 0.12 + inner, y + 0.43), (x + w - 0.12 - inner, y + 0.43), "#333333", style="<|-|>", lw=1.0, z=5)


def nats_node(ax, cx, cy, label):
    box(ax, cx - 0.55, cy - 0.28, 1.1, 0.56, label, "white", edge="#b07d00", size=9, weight="bold", z=3)
    return cx, cy


def pair(ax, bridge, node, rad=0.0, gap=0.12, export=True, imports=True):
    """An export arrow (bridge -> node) and an import arrow (node -> bridge), side by side."""
    (bx, by), (nx, ny) = bridge, node
    dx, dy = nx - bx, ny - by
    n = (dx * dx + dy * dy) ** 0.5
    ox, oy = -dy / n * gap, dx / n * gap  # perpendicular offset
    if export:
        arrow(ax, (bx + ox, by + oy), (nx + ox, ny + oy), EXPORT, rad=rad)
    if imports:
        arrow(ax, (nx - ox, ny - oy), (bx - ox, by - oy), IMPORT, rad=rad)


def main(out: str) -> str:
    fig, ax = plt.subplots(figsize=(13, 7.8), dpi=110)
    ax.set_xlim(0, 13.2)
    ax.set_ylim(0, 7.8)
    ax.axis("off")
    ax.text(0.3, 7.6, "decnet bus bridge: one broker + one bridge per host, joined over NATS",
            fontsize=12.5, weight="bold")

    # The NATS cluster, in the middle.
    box(ax, 4.3, 3.15, 4.4, 2.3, "", NATS_BG, edge="#b07d00", lw=1.5)
    ax.text(6.5, 5.17, "NATS cluster (3 servers)", ha="center", fontsize=10.5, weight="bold", color="#7a5600")
    n1 = nats_node(ax, 5.15, 4.5, "nats1")
    n2 = nats_node(ax, 7.85, 4.5, "nats2")
    n3 = nats_node(ax, 6.5, 3.6, "nats3")
    for a, b in ((n1, n2), (n1, n3), (n2, n3)):
        arrow(ax, a, b, ROUTE, style="-", lw=1.3, ls="--", z=2)

    # The master, top left: imports every agent's decky events, exports topology changes.
    host(ax, 0.3, 5.5, "master", "export topology.>", "import decky.>")
    pair(ax, (2.85, 6.2), (4.6, 4.6))
    # Two agents on the cluster directly.
    host(ax, 10.2, 5.5, "agent1", "export decky.>", "import topology.>")
    pair(ax, (10.15, 6.2), (8.4, 4.6))
    host(ax, 0.3, 1.2, "agent2", "export decky.>", "import topology.>")
    pair(ax, (2.85, 2.2), (5.95, 3.45))

    # A site behind one leaf node, bottom right.
    box(ax, 5.9, 0.15, 7.05, 2.6, "", SITE_BG, edge="#3c8d3c", lw=1.5)
    ax.text(12.8, 2.55, "site (a remote network)", ha="right", va="center", fontsize=10, weight="bold",
            color="#2e6b2e")
    leaf = nats_node(ax, 7.0, 1.3, "leaf node")
    ax.text(7.0, 0.9, "nats-server\nwith a leafnode\nremote", ha="center", va="top", fontsize=7.5, color="#444444")
    arrow(ax, (leaf[0] - 0.1, leaf[1] + 0.3), (n3[0] + 0.1, n3[1] - 0.3), ROUTE, style="<|-|>", lw=2.2, z=4)
    ax.text(4.35, 1.1, "one leafnode connection per site:\nonly subjects with interest on\nthe other side cross it",
            ha="center", va="center", fontsize=7.5, color="#333333",
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor="#bbbbbb"))
    host(ax, 7.95, 0.3, "agent3", "export decky.>", w=2.3)
    host(ax, 10.45, 0.3, "agent4", "export decky.>", w=2.3)
    pair(ax, (7.95, 0.7), (7.55, 1.15), imports=False, gap=0.0)
    arrow(ax, (11.6, 2.05), (7.3, 1.58), EXPORT, rad=0.3)

    # Legend.
    lx, ly = 9.25, 3.85
    box(ax, lx - 0.15, ly - 0.75, 3.85, 1.45, "", "white", edge="#bbbbbb")
    for k, (color, style, ls, text) in enumerate((
            (EXPORT, "-|>", "-", "export: local topic T → subject decnet.T"),
            (IMPORT, "-|>", "-", "import: subject decnet.T → local topic T"),
            (ROUTE, "-", "--", "NATS cluster routes (full mesh)"),
            (ROUTE, "<|-|>", "-", "NATS leafnode connection"))):
        y = ly + 0.5 - k * 0.33
        arrow(ax, (lx, y), (lx + 0.55, y), color, style=style, ls=ls)
        ax.text(lx + 0.68, y, text, va="center", fontsize=8)
    fig.savefig(out, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return out


if __name__ == "__main__":
    print("wrote", main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT))
