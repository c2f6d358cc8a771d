#!/usr/bin/env python3
"""How cost grows with the payload: 64 B to 64 KiB, decnet-bus against NATS,
Redis pub/sub and ZeroMQ, against this machine's memcpy bandwidth.

The fan-out benchmark's workload (bench/fanout.py: a real server process, one
publisher process -> N subscriber processes on each system's public asyncio
client, wildcard subscription, an orjson dict per event) with the payload
padded to each ``--sizes`` byte count. The publisher sends as fast as its
client allows; each trial sends ``--mib`` MiB of payload (between
``--min-events`` and ``--max-events`` events), so every size runs for a
comparable time. Reported per system and size, medians over interleaved
rounds: delivered events/s summed over subscribers, MB/s (payload bytes
delivered per second, summed over subscribers, 1 MB = 10^6 bytes), events
lost, server and subscriber CPU per delivered event, and that MB/s as a
fraction of one memcpy's bandwidth on this machine, measured in the same run
(``memcpy_bandwidth`` in scale_common.py: a 256 MiB copy, DRAM to DRAM; the
cache-hot copy of one payload is printed beside it).

    .venv/bin/python bench/scale_payload.py --quick
    .venv/bin/python bench/scale_payload.py --subs 1 --rounds 3 --json /tmp/payload.json --png docs/scale-payload.png
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scale_common as sc  # noqa: E402
from fanout import stop_all  # noqa: E402

DEFAULT_SIZES = "64,256,1024,4096,16384,65536"


def events_for(size: int, args) -> int:
    return max(args.min_events, min(args.max_events, args.mib * (1 << 20) // size))


def summarize(results: list[dict], systems: list[str], sizes: list[int], subs: list[int], memcpy: dict) -> list[dict]:
    rows = []
    for n in subs:
        for size in sizes:
            for s in systems:
                runs = [r for r in results if r["system"] == s and r["size"] == size and r["subs"] == n]
                if not runs:
                    continue
                ok = [r for r in runs if r["status"] == "ok"]
                rates = [r["rate"] for r in ok]
                mbs = [r["rate"] * size / 1e6 for r in ok if r["rate"]]
                rows.append({
                    "system": s, "size": size, "subs": n, "rounds": len(runs), "ok": len(ok),
                    "rate": sc.median(rates), "rate_range": sc.spread(rates),
                    "mbs": sc.median(mbs),
                    "mbs_range": sc.spread(mbs, ",.0f" if min(mbs, default=0) >= 100 else ",.1f"),
                    "lost": sc.median([r["lost"] for r in ok]),
                    "srv_us": sc.median([r["srv_us"] for r in ok]),
                    "sub_us": sc.median([r["sub_us"] for r in ok]),
                    "pub_us": sc.median([r["pub_us"] for r in ok]),
                    "of_memcpy": (sc.median(mbs) * 1e6 / memcpy["large"]) if mbs else None,
                    "why": "; ".join(sorted({r.get("why", "") for r in runs if r["status"] != "ok"})),
                })
    return rows


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def markdown(rows: list[dict], memcpy: dict) -> str:
    out = ["| N | payload | system | delivered ev/s (range) | MB/s (range) | of memcpy | lost "
           "| pub µs/publish | server µs/delivery | sub µs/event |", "|" + "---|" * 10]
    for r in rows:
        if not r["ok"]:
            out.append(f"| {r['subs']} | {size_label(r['size'])} | {r['system']} | failed: {r['why']} ||||||||")
            continue
        out.append(
            f"| {r['subs']} | {size_label(r['size'])} | {r['system']} | {r['rate']:,.0f} ({r['rate_range']}) "
            f"| {r['mbs']:,.1f} ({r['mbs_range']}) | {r['of_memcpy'] * 100:.1f}% | {r['lost']:,.0f} "
            f"| {fmt_us(r['pub_us'])} | {fmt_us(r['srv_us'])} | {fmt_us(r['sub_us'])} |")
    hot = ", ".join(f"{size_label(k)} {v / 1e9:.1f}" for k, v in memcpy.items() if k != "large")
    out.append("")
    out.append(f"memcpy on this machine in this run: 256 MiB copy {memcpy['large'] / 1e9:.2f} GB/s (the ceiling "
               f"used above); one cache-hot copy of a payload (GB/s): {hot}.")
    return "\n".join(out) + "\n"


def fmt_us(v) -> str:
    return "—" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def chart(rows: list[dict], memcpy: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    from fanout_chart import colours

    systems = list(dict.fromkeys(r["system"] for r in rows))
    colour = colours(systems + ["decnet"])
    subs = sorted({r["subs"] for r in rows})
    fig, axes = plt.subplots(len(subs), 2, figsize=(13, 4.4 * len(subs)), squeeze=False)
    for i, n in enumerate(subs):
        for ax, key, title in ((axes[i][0], "rate", "delivered events/s, all subscribers"),
                               (axes[i][1], "mbs", "payload MB/s delivered, all subscribers")):
            for s in systems:
                pts = [r for r in rows if r["system"] == s and r["subs"] == n and r[key]]
                kept = s == sc.MALLOC_KEPT  # decnet's colour, dashed
                ax.plot([r["size"] for r in pts], [r[key] for r in pts], marker="o", label=s,
                        color=colour["decnet" if kept else s], linestyle="--" if kept else "-")
                lossy = [r for r in pts if r["lost"]]
                ax.plot([r["size"] for r in lossy], [r[key] for r in lossy], "x", color="black", markersize=9,
                        label=None if i or key != "rate" or not lossy else "events lost")
            if key == "mbs":
                ax.axhline(memcpy["large"] / 1e6, color="black", linestyle="--", linewidth=1,
                           label="memcpy, 256 MiB copy")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            sizes = sorted({r["size"] for r in rows})
            ax.set_xticks(sizes)
            ax.set_xticklabels([size_label(s) for s in sizes])
            ax.set_xlabel("payload size")
            ax.set_title(f"{title} (log), 1 publisher -> {n} subscriber(s)", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="scale_payload.py",
        description="Payload-size curve: 1 publisher -> N subscribers as fast as the publisher's client allows, "
                    "payload from 64 B to 64 KiB, decnet-bus and its peers (NATS, Redis pub/sub, ZeroMQ) "
                    "interleaved; events/s, MB/s and the fraction of this machine's memcpy bandwidth. "
                    "Install the peers with: bash bench/peers.sh")
    p.add_argument("--systems", default=",".join(["decnet", sc.MALLOC_KEPT, *sc.SYSTEMS[1:]]), type=sc.choices("decnet", sc.MALLOC_KEPT, *sc.SYSTEMS[1:]),
                   help=f"comma list (default: %(default)s); {sc.MALLOC_KEPT} is decnet with "
                        + " ".join(f"{k}={v}" for k, v in sc.MALLOC_ENV.items()) + " in every decnet process")
    p.add_argument("--sizes", default=DEFAULT_SIZES, type=sc.int_list(1), help="payload sizes in bytes, comma list (default: %(default)s)")
    p.add_argument("--subs", default="1", type=sc.int_list(1), help="subscriber counts N, comma list (default: %(default)s)")
    p.add_argument("--mib", type=int, default=64,
                   help="MiB of payload the publisher sends per trial (default: %(default)s)")
    p.add_argument("--min-events", type=int, default=1000,
                   help="at least this many events per trial (default: %(default)s)")
    p.add_argument("--max-events", type=int, default=50000,
                   help="at most this many events per trial (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="repetitions, systems interleaved; medians (default: %(default)s)")
    p.add_argument("--decnet-args", default="", metavar="ARGS",
                   help="extra options for the decnet broker, e.g. '--max-stall-ms 50' (default: none)")
    p.add_argument("--json", metavar="FILE", help="write machine info, every trial and the medians as JSON")
    p.add_argument("--png", metavar="FILE", help="write the chart (needs matplotlib)")
    p.add_argument("--keep", action="store_true", help="keep each trial's temp dir (process logs)")
    p.add_argument("--quick", action="store_true", help="smoke run: --rounds 1 --sizes 64,65536 --mib 4")
    p.add_argument("--replot", nargs="+", metavar="JSON", type=sc.json_file,
                   help="run nothing: print the table and draw --png from these --json files (e.g. an N=1 run and "
                        "an N=10 run); the memcpy ceiling is the first file's")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.sizes, args.mib = 1, "64,65536", 4
        args.min_events = min(args.min_events, 200)
    args.sizes_list = [int(x) for x in args.sizes.split(",") if x]
    args.subs_list = [int(x) for x in args.subs.split(",") if x]
    args.systems_list = [s for s in args.systems.split(",") if s]
    return args


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def replot(args) -> int:
    runs = [sc.read_json(path) for path in args.replot]
    results = [r for run in runs for r in run["results"]]
    memcpy = {(int(k) if k.isdigit() else k): v for k, v in runs[0]["memcpy"].items()}
    systems = list(dict.fromkeys(r["system"] for r in results))
    sizes = sorted({r["size"] for r in results})
    subs = sorted({r["subs"] for r in results})
    rows = summarize(results, systems, sizes, subs, memcpy)
    print(markdown(rows, memcpy))
    if args.png:
        print(chart(rows, memcpy, args.png) or f"wrote {args.png}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        return replot(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    head = sc.header("decnet-bus: cost against payload size")
    print("\n".join(head), flush=True)
    systems = sc.systems_to_run(args.systems_list, args.decnet_args)
    memcpy = sc.memcpy_bandwidth(args.sizes_list)
    print(f"memcpy 256 MiB: {memcpy['large'] / 1e9:.2f} GB/s", flush=True)
    results: list[dict] = []
    try:
        for rnd in range(1, args.rounds + 1):
            for n in args.subs_list:
                for size in args.sizes_list:
                    events = events_for(size, args)
                    for s in systems:
                        t = time.monotonic()
                        r = sc.run_trial(s, 1, n, {"size": size, "events": events}, keep=args.keep, numbered=False)
                        r.update(round=rnd, size=size, events=events)
                        results.append(r)
                        if r["status"] == "ok":
                            extra = (f"{r['rate']:,.0f} ev/s {r['rate'] * size / 1e6:,.1f} MB/s lost={r['lost']} "
                                     f"pub={fmt_us(r['pub_us'])}µs srv={fmt_us(r['srv_us'])}µs "
                                     f"sub={fmt_us(r['sub_us'])}µs")
                        else:
                            extra = f"{r['status'].upper()}: {r.get('why')}"
                        print(f"  round {rnd} N={n} {size_label(size):>6} {s.name:<7} {time.monotonic() - t:5.1f}s "
                              f"{extra}", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what finished", flush=True)
    finally:
        stop_all()
    memcpy_after = sc.memcpy_bandwidth([], seconds=0.1)["large"]
    rows = summarize(results, [s.name for s in systems], args.sizes_list, args.subs_list, memcpy)
    print(f"- after: {sc.uptime()}; memcpy 256 MiB after the run: {memcpy_after / 1e9:.2f} GB/s\n")
    print(markdown(rows, memcpy), flush=True)
    if args.json:
        sc.write_json(args.json, {"header": head, "commit": sc.git_commit(), "memcpy": memcpy,
                                  "memcpy_after": memcpy_after, "args": vars(args), "results": results,
                                  "medians": rows})
    if args.png:
        print(chart(rows, memcpy, args.png) or f"wrote {args.png}")
    return 0 if all(r["status"] == "ok" for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
