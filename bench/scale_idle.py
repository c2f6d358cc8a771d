#!/usr/bin/env python3
"""What idle connections cost a server: RSS per connection, and CPU per
second while nothing is published.

For each N in ``--sizes`` and each kind of connection, a fresh server; its
RSS read empty, then N connections are opened by ``--workers`` processes
(bench/scale_worker.py) and the RSS read again after 1 s: RSS per connection
= (RSS with N - RSS empty) / N. Then nothing happens for ``--idle`` seconds
and the server's CPU time over them (``decnet.bus.testing.cpu_time``) is its
idle cost, in milliseconds of CPU per second.

Kinds:

- decnet ``hello``: a raw connection that said HELLO and nothing else (a
  connection that says nothing is closed after ``--hello-timeout``, 2 s).
- decnet ``sub``: HELLO and one SUB, to a literal topic of its own.
- decnet ``client``: a real ``UnixBus`` with one Subscription entered: what a
  DECNET worker holds, with its keepalive (a PING after 5 s without reading
  anything, decnet/bus/client_protocol.py).
- nats ``connect`` / ``sub``: raw TCP, ``CONNECT`` (and one ``SUB``);
  nats-server's own keepalive is a PING every 2 minutes, outside the window.
- redis ``bare`` / ``sub``: a raw connection (that said ``PING``) / one
  ``PSUBSCRIBE``.

The decnet broker runs with ``--max-connections 10000`` (the default, 4,096,
refuses the 5,000th); its heartbeat is every 5 s (``--health-interval``).

    .venv/bin/python bench/scale_idle.py --quick
    .venv/bin/python bench/scale_idle.py --json /tmp/idle.json --png docs/scale-idle.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time

from scale_common import choices, int_list, json_file
from scale_servers import Server, Trial, Workers, load, machine_info, stop_many, _live

from decnet.bus.testing import syscalls

KINDS = {"decnet": ["hello", "sub", "client"], "nats": ["connect", "sub"], "redis": ["bare", "sub"]}


def patterns(kind: str, n: int) -> list[list[str]]:
    if kind in ("sub", "client"):
        return [[f"idle.c{i}.state"] for i in range(n)]
    return [[] for _ in range(n)]


def trial(system: str, kind: str, n: int, args) -> dict:
    res = {"system": system, "kind": kind, "conns": n, "load_before": round(load(), 2)}
    with Trial(res, f"scale-idle-{system}-") as scope:
        server = scope.own(Server(system, scope.tmp, ("--max-connections", "10000")), "stop")
        time.sleep(1.0)
        rss0 = server.rss()
        res["rss_empty_mib"] = round(rss0 / 2**20, 2)
        t = time.monotonic()
        if n:
            worker_system = "decnet-client" if kind == "client" else system
            scope.own(Workers(worker_system, server.address, patterns(kind, n), args.workers, scope.tmp, timeout=300))
        res["setup_s"] = round(time.monotonic() - t, 2)
        time.sleep(1.0)
        rss1 = server.rss()
        res["rss_mib"] = round(rss1 / 2**20, 2)
        res["rss_per_conn_kib"] = round((rss1 - rss0) / n / 1024, 2) if n else None
        io0, c0 = syscalls(server.pid), server.cpu()
        time.sleep(args.idle)
        cpu, io1 = server.cpu() - c0, syscalls(server.pid)
        # Linux's syscr: read/readv (libuv's, redis's, Go's); every request a client sends is one.
        res["reads_per_s"] = round((io1[0] - io0[0]) / args.idle, 1)
        res["idle_cpu_ms_per_s"] = round(cpu / args.idle * 1000, 3)
        res["idle_cpu_us_per_conn_s"] = round(cpu / args.idle / n * 1e6, 3) if n else None
    return res


def medians(results: list[dict]) -> list[dict]:
    rows = []
    for key in dict.fromkeys((r["system"], r["kind"], r["conns"]) for r in results):
        ok = [r for r in results if (r["system"], r["kind"], r["conns"]) == key and r.get("status") == "ok"]
        if not ok:
            continue
        row = {"system": key[0], "kind": key[1], "conns": key[2], "rounds": len(ok)}
        for k in ("rss_empty_mib", "rss_mib", "rss_per_conn_kib", "idle_cpu_ms_per_s", "idle_cpu_us_per_conn_s", "setup_s", "reads_per_s"):
            vals = [r[k] for r in ok if r.get(k) is not None]
            row[k] = statistics.median(vals) if vals else None
            row[k + "_range"] = (min(vals), max(vals)) if vals else None
        rows.append(row)
    rows.sort(key=lambda r: (list(KINDS).index(r["system"]), KINDS[r["system"]].index(r["kind"]) if r["kind"] in KINDS[r["system"]] else -1, r["conns"]))
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| system | connections | kind | RSS empty MiB | RSS MiB | RSS per connection KiB | idle CPU ms/s | idle CPU µs/s per connection | server reads/s |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, p: "—" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        out.append(f"| {r['system']} | {r['conns']:,} | {r['kind']} | {f(r['rss_empty_mib'], 1)} | {f(r['rss_mib'], 1)} | "
                   f"{f(r['rss_per_conn_kib'], 1)} | {f(r['idle_cpu_ms_per_s'], 2)} | {f(r['idle_cpu_us_per_conn_s'], 2)} | {f(r.get('reads_per_s'), 1)} |")
    return "\n".join(out) + "\n"


def chart(rows: list[dict], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    colours = {"decnet": "#1f77b4", "nats": "#2ca02c", "redis": "#d62728"}
    styles = {"hello": "--", "connect": "--", "bare": "--", "sub": "-", "client": ":"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, metric, title in ((axes[0], "rss_per_conn_kib", "server RSS per idle connection (KiB)"),
                              (axes[1], "idle_cpu_ms_per_s", "server CPU while idle (ms per second)")):
        for system, kinds in KINDS.items():
            for kind in kinds:
                pts = sorted((r["conns"], r[metric]) for r in rows if r["system"] == system and r["kind"] == kind
                             and r["conns"] and r[metric] is not None)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[kind], marker="o", color=colours[system],
                            label=f"{system} {kind}")
        ax.set_xscale("log")
        if metric == "idle_cpu_ms_per_s":
            ax.set_yscale("log")
        ax.set_xlabel("idle connections")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Idle connections: memory and CPU of the server", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="decnet,nats,redis", type=choices(*KINDS), help="comma list of decnet, nats, redis (default: all three)")
    p.add_argument("--kinds", type=choices(*dict.fromkeys(k for ks in KINDS.values() for k in ks)), help="comma list of connection kinds to run (default: every kind of each system)")
    p.add_argument("--sizes", default="0,10,100,1000,5000", type=int_list(0), help="connections, comma list (0: the empty server)")
    p.add_argument("--workers", type=int, default=4, help="processes holding the connections (default 4)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured (default 10: two heartbeats)")
    p.add_argument("--rounds", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--quick", action="store_true", help="a smoke run: sizes 0,10,100, 2 s idle")
    p.add_argument("--merge", nargs="+", metavar="JSON", type=json_file, help="run nothing: print the table and draw --png from saved "
                   "--json files, a later file's rows replacing the same system/kind/size of an earlier one")
    p.add_argument("--json", help="write every trial and the medians here")
    p.add_argument("--png", help="write the chart here")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.idle = "0,10,100", 2.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge:
        merged: dict = {}
        for path in args.merge:
            with open(path) as f:
                for r in json.load(f)["rows"]:
                    merged[(r["system"], r["kind"], r["conns"])] = r
        rows = sorted(merged.values(), key=lambda r: (list(KINDS).index(r["system"]), r["kind"] != "none",
                                                      KINDS[r["system"]].index(r["kind"]) if r["kind"] in KINDS[r["system"]] else -1, r["conns"]))
        print(markdown(rows))
        if args.png:
            chart(rows, args.png)
        return 0
    systems = [s for s in args.systems.split(",") if s == "decnet" or shutil.which(f"{s}-server")]
    sizes = [int(x) for x in args.sizes.split(",")]
    wanted = set(args.kinds.split(",")) if args.kinds else None
    results = []
    started = time.time()
    print(f"load {load():.2f}", flush=True)
    try:
        for rnd in range(args.rounds):
            for n in sizes:
                for system in systems:
                    for kind in (["none"] if n == 0 else KINDS[system]):
                        if wanted and n and kind not in wanted:
                            continue
                        r = trial(system, kind, n, args)
                        r["round"] = rnd
                        results.append(r)
                        print(json.dumps({k: r.get(k) for k in ("system", "kind", "conns", "status", "rss_mib", "rss_per_conn_kib",
                                                               "idle_cpu_ms_per_s", "setup_s", "load_before")}), flush=True)
    finally:
        stop_many(list(_live))
    rows = medians(results)
    print(markdown(rows))
    print(f"load {load():.2f}; {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": machine_info(), "trials": results, "rows": rows}, f, indent=1)
    if args.png:
        why = chart(rows, args.png)
        if why:
            print(why, file=sys.stderr)
    return 0 if all(r.get("status") == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
