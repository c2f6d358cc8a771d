#!/usr/bin/env python3
"""How cost grows with the publishers, and whether they are served fairly:
decnet-bus against NATS, Redis pub/sub and ZeroMQ.

The fan-out benchmark's clients and servers (bench/fanout.py), with P
numbered publisher processes; each payload (~200 bytes) carries its
publisher's id and sequence number, and each subscriber counts per publisher
(bench/scale_counter.py).

Sweep (``--pubs``): P publishers -> 1 subscriber, all flat out, ``--events``
events in total (each publisher sends events/P). Reported, medians over
interleaved rounds: delivered events/s (events received / (last delivery -
first publish)), events lost, server CPU per delivered event, subscriber CPU
per event, and the smallest publisher's share of what was delivered over the
largest's.

Fairness (``--variants``), ``--fair-pubs`` publishers -> ``--fair-subs``
subscribers for ``--seconds`` seconds:

- ``flat``: every publisher flat out. Each subscriber counts every
  publisher's events in each ``--slice`` seconds since its own first event;
  per (subscriber, whole slice) Jain's fairness index over the publishers,
  J = (sum x)^2 / (P * sum x^2), 1 = equal shares, 1/P = one publisher gets
  everything. Reported: the median and the lowest J over all those slices, and
  min/max of the publishers' shares over the whole run.
- ``mixed``: publisher 0 flat out, the others paced at ``--paced-rate``
  events/s each (send time in the payload). Reported: the paced publishers'
  delivered fraction (delivered / (sent * subscribers)) and the p50 and p99
  one-way latency of their events (the median over the paced publishers and
  subscribers of each one's p50 and p99), and the flat-out publisher's
  delivered events/s per subscriber.
- ``paced``: every publisher paced at ``--paced-rate``: the latency the paced
  publishers of ``mixed`` would have had without the flat-out one.

    .venv/bin/python bench/scale_publishers.py --quick
    .venv/bin/python bench/scale_publishers.py --rounds 3 --json /tmp/pubs.json --png docs/scale-publishers.png
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scale_common as sc  # noqa: E402
from fanout import stop_all  # noqa: E402


def jain(xs: list[float]) -> float | None:
    s = sum(xs)
    q = sum(x * x for x in xs)
    return (s * s) / (len(xs) * q) if q else None


def min_max_share(xs: list[float]) -> float | None:
    return min(xs) / max(xs) if max(xs) else None


def jains(r: dict, merge: int) -> list[float]:
    """Jain's index over the publishers for each subscriber and each window of
    ``merge`` slices: whole windows while every publisher still published, not
    the first slice (publishers start one after the other), none past the
    first publisher's end (a backlog drained after it is not a share)."""
    out = []
    for sub, first in zip(r["slices"], r["firsts"]):
        width = min(len(s) for s in sub)
        if first is not None:
            width = min(width, int((r["t_sent_min"] - first) / r["slice"]))
        for k in range(1, width - merge + 1, merge):
            j = jain([sum(s[k:k + merge]) for s in sub])
            if j is not None:
                out.append(j)
    return out


def fairness(r: dict, variant: str, paced_rate: float, seconds: float) -> dict:
    """The fairness figures of one ``flat``/``mixed``/``paced`` trial."""
    pubs = r["pubs"]
    out: dict = {}
    totals = [sum(per[p] for per in r["per"]) for p in range(pubs)]
    out["sent"] = r["sent"]
    out["sent_minmax"] = min_max_share(r["sent"])
    out["delivered_pct"] = 100 * r["delivered"] / r["expected"] if r["expected"] else None
    if variant == "flat":
        for merge, key in ((1, "jain"), (4, "jain4")):
            js = jains(r, merge)
            out[key + "_median"] = statistics.median(js) if js else None
            out[key + "_min"] = min(js) if js else None
            out[key + "_slices"] = len(js)
        out["jain_total"] = jain(totals)
        out["minmax"] = min_max_share(totals)
        return out
    paced = range(1, pubs) if variant == "mixed" else range(pubs)
    subs = r["subs"]
    out["paced_delivered"] = sum(totals[p] for p in paced) / max(1, subs * sum(r["sent"][p] for p in paced))
    # Per paced publisher and subscriber: events/s that reached it while it ran.
    out["paced_rate"] = statistics.median([per[p] / seconds for per in r["per"] for p in paced])
    lats = [lp[p] for lp in r["lat_per"] for p in paced if lp[p].get("n")]
    out["p50_us"] = statistics.median([x["p50"] for x in lats]) if lats else None
    out["p99_us"] = statistics.median([x["p99"] for x in lats]) if lats else None
    out["p99_max_us"] = max(x["p99"] for x in lats) if lats else None
    if variant == "mixed":
        out["flat_rate_per_sub"] = statistics.median([per[0] for per in r["per"]]) / seconds
        out["flat_sent"] = r["sent"][0]
    return out


def sweep_rows(results, systems, pubs_list) -> list[dict]:
    rows = []
    for p in pubs_list:
        for s in systems:
            runs = [r for r in results if r["kind"] == "sweep" and r["system"] == s and r["pubs"] == p]
            if not runs:
                continue
            ok = [r for r in runs if r["status"] == "ok"]
            rates = [r["rate"] for r in ok]
            rows.append({
                "system": s, "pubs": p, "rounds": len(runs), "ok": len(ok),
                "rate": sc.median(rates), "rate_range": sc.spread(rates),
                "lost": sc.median([r["lost"] for r in ok]),
                "lost_pct": sc.median([100 * r["lost"] / r["expected"] for r in ok if r["expected"]]),
                "srv_us": sc.median([r["srv_us"] for r in ok]),
                "sub_us": sc.median([r["sub_us"] for r in ok]),
                "minmax": sc.median([min_max_share(r["per"][0]) for r in ok if r["per"] and r["per"][0]]),
                "why": "; ".join(sorted({r.get("why", "") for r in runs if r["status"] != "ok"})),
            })
    return rows


FAIR_KEYS = ["delivered_pct", "jain_median", "jain_min", "jain4_median", "jain4_min", "jain_total", "minmax",
             "sent_minmax", "paced_delivered", "paced_rate",
             "p50_us", "p99_us", "p99_max_us", "flat_rate_per_sub", "flat_sent"]


def fair_rows(results, systems, variants) -> list[dict]:
    rows = []
    for v in variants:
        for s in systems:
            runs = [r for r in results if r["kind"] == v and r["system"] == s]
            if not runs:
                continue
            ok = [r for r in runs if r["status"] == "ok"]
            row = {"system": s, "variant": v, "rounds": len(runs), "ok": len(ok),
                   "why": "; ".join(sorted({r.get("why", "") for r in runs if r["status"] != "ok"}))}
            for k in FAIR_KEYS:
                vals = [r["fair"].get(k) for r in ok]
                row[k] = sc.median(vals)
                row[k + "_all"] = [x for x in vals if x is not None]
            rows.append(row)
    return rows


def f(v, spec=",.0f") -> str:
    return "—" if v is None else format(v, spec)


def markdown(sweep: list[dict], fair: list[dict], args) -> str:
    out = []
    if sweep:
        out += ["| publishers | system | delivered ev/s (range) | lost | lost % | server µs/event | sub µs/event "
                "| min/max share |", "|" + "---|" * 8]
        for r in sweep:
            if not r["ok"]:
                out.append(f"| {r['pubs']} | {r['system']} | failed: {r['why']} ||||||")
                continue
            out.append(f"| {r['pubs']} | {r['system']} | {f(r['rate'])} ({r['rate_range']}) | {f(r['lost'])} "
                       f"| {f(r['lost_pct'], '.1f')} | {f(r['srv_us'], '.2f')} | {f(r['sub_us'], '.2f')} "
                       f"| {f(r['minmax'], '.2f')} |")
        out.append("")
    flat = [r for r in fair if r["variant"] == "flat"]
    if flat:
        out += [f"Flat out, {args.fair_pubs} publishers -> {args.fair_subs} subscribers, {args.seconds:g} s, "
                f"{args.slice:g} s slices:", "",
                f"| system | delivered | Jain per {args.slice:g} s, median | lowest "
                f"| Jain per {4 * args.slice:g} s, median | lowest "
                "| Jain, whole run | min/max share delivered | min/max share sent |", "|" + "---|" * 9]
        for r in flat:
            if not r["ok"]:
                out.append(f"| {r['system']} | failed: {r['why']} ||||||||")
                continue
            cells = [f(r["delivered_pct"], ".1f") + "%"] + [f(r[k], ".3f") for k in (
                "jain_median", "jain_min", "jain4_median", "jain4_min", "jain_total")]
            cells += [f(r["minmax"], ".2f"), f(r["sent_minmax"], ".2f")]
            out.append(f"| {r['system']} | " + " | ".join(cells) + " |")
        out.append("")
    mixed = [r for r in fair if r["variant"] in ("mixed", "paced")]
    if mixed:
        out += [f"Paced publishers at {args.paced_rate:g} ev/s each, with publisher 0 flat out (mixed) or paced "
                "too (paced):", "",
                "| system | variant | paced delivered | paced ev/s per subscriber | paced p50 µs | paced p99 µs "
                "| worst p99 µs | flat-out ev/s per subscriber |", "|" + "---|" * 8]
        for r in mixed:
            if not r["ok"]:
                out.append(f"| {r['system']} | {r['variant']} | failed: {r['why']} ||||||")
                continue
            pd = r["paced_delivered"]
            out.append(f"| {r['system']} | {r['variant']} | {'—' if pd is None else f'{pd * 100:.1f}%'} "
                       f"| {f(r['paced_rate'])} | {f(r['p50_us'])} | {f(r['p99_us'])} | {f(r['p99_max_us'])} "
                       f"| {f(r['flat_rate_per_sub'])} |")
    return "\n".join(out) + "\n"


def chart(sweep: list[dict], fair: list[dict], path: str) -> str | None:
    """Top row: the sweep against P; bottom row: the fairness trials."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return "matplotlib not installed: no chart"
    from fanout_chart import colours

    systems = list(dict.fromkeys([r["system"] for r in sweep] + [r["system"] for r in fair]))
    colour = colours(systems)
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    pubs = sorted({r["pubs"] for r in sweep})
    for ax, key, title, log in ((axes[0][0], "rate", "P publishers -> 1 subscriber: delivered events/s (log)", True),
                                (axes[0][1], "srv_us", "server CPU µs per delivered event (log)", True),
                                (axes[0][2], "lost_pct", "events lost, % of sent", False)):
        for s in systems:
            pts = [(r["pubs"], r[key]) for r in sweep if r["system"] == s and r[key] is not None]
            if pts:
                ax.plot([p for p, _ in pts], [v for _, v in pts], marker="o", label=s, color=colour[s])
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xticks(pubs)
        ax.set_xticklabels([str(p) for p in pubs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("publisher processes P")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)

    def bars(ax, rows, keys, labels, title, ylabel, log=False, lows=None):
        shown = [s for s in systems if s in rows]
        width = 0.8 / len(keys)
        for j, (key, label) in enumerate(zip(keys, labels)):
            xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(shown))]
            vals = [rows[s][key] or 0 for s in shown]
            ax.bar(xs, vals, width, color=[colour[s] for s in shown], alpha=1.0 - 0.2 * j,
                   edgecolor="black", linewidth=0.5)
            for x, v in zip(xs, vals):
                ax.text(x, v, label, ha="center", va="bottom", fontsize=7)
            if lows:
                for x, s in zip(xs, shown):
                    low = rows[s].get(lows[j] + "_all") or []
                    ax.plot([x] * len(low), low, "v", color="black", markersize=4)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(shown)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y", which="both")

    flat = {r["system"]: r for r in fair if r["variant"] == "flat" and r["ok"]}
    if flat:
        bars(axes[1][0], flat, ["jain_median", "jain4_median", "jain_total"], ["slice", "4 slices", "run"],
             "flat out, 10 -> 10: Jain's index over publishers\n(median per slice, per 4 slices, whole run; "
             "▼ lowest, each round)", "Jain's index (1 = equal shares)", lows=["jain_min", "jain4_min", "jain_total"])
        axes[1][0].set_ylim(0, 1.1)
    mixed = {r["system"]: r for r in fair if r["variant"] == "mixed" and r["ok"]}
    paced = {r["system"]: r for r in fair if r["variant"] == "paced" and r["ok"]}
    both = {s: {"mixed": mixed[s]["p99_us"], "paced": paced[s]["p99_us"],
                "mixed_p50": mixed[s]["p50_us"], "paced_p50": paced[s]["p50_us"]}
            for s in mixed if s in paced}
    if both:
        bars(axes[1][1], both, ["paced_p50", "paced", "mixed_p50", "mixed"],
             ["p50", "p99", "p50", "p99"], "paced publishers' latency: all paced (left pair)\n"
             "vs. beside one flat-out publisher (right pair)", "one-way latency µs (log)", log=True)
    if flat and mixed:
        rows = {s: {"flat": flat[s]["delivered_pct"], "paced": mixed[s]["paced_delivered"] * 100}
                for s in flat if s in mixed}
        bars(axes[1][2], rows, ["flat", "paced"], ["flat out", "paced"], "% of sent events delivered: flat out "
             "10 -> 10 (left);\nthe paced publishers beside one flat-out publisher (right)", "% delivered")
        axes[1][2].set_ylim(0, 110)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="scale_publishers.py",
        description="Publisher-count curve (P publishers -> 1 subscriber) and fairness between publishers "
                    "(10 -> 10, flat out, and one flat out among paced ones), decnet-bus and its peers "
                    "(NATS, Redis pub/sub, ZeroMQ) interleaved. Install the peers with: bash bench/peers.sh")
    p.add_argument("--systems", default=",".join(sc.SYSTEMS), type=sc.choices(*sc.SYSTEMS), help="comma list (default: %(default)s)")
    p.add_argument("--pubs", default="1,2,5,10,20,50", type=sc.int_list(1, empty=True),
                   help="publisher counts of the sweep, comma list; empty for none (default: %(default)s)")
    p.add_argument("--events", type=int, default=60000,
                   help="events sent in total in each sweep trial, split over the publishers (default: %(default)s)")
    p.add_argument("--variants", default="flat,mixed,paced",
                   help="fairness trials, comma list of flat, mixed, paced; empty for none (default: %(default)s)")
    p.add_argument("--fair-pubs", type=sc.positive_int, default=10, help="publishers in the fairness trials (default: %(default)s)")
    p.add_argument("--fair-subs", type=sc.positive_int, default=10,
                   help="subscribers in the fairness trials (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of a fairness trial (default: %(default)s)")
    p.add_argument("--slice", type=float, default=0.25, help="fairness time slice in seconds (default: %(default)s)")
    p.add_argument("--paced-rate", type=float, default=500.0,
                   help="events/s of each paced publisher (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="repetitions, systems interleaved; medians (default: %(default)s)")
    p.add_argument("--decnet-args", default="", metavar="ARGS",
                   help="extra options for the decnet broker, e.g. '--max-stall-ms 50' (default: none)")
    p.add_argument("--json", metavar="FILE", help="write machine info, every trial and the medians as JSON")
    p.add_argument("--png", metavar="FILE", help="write the chart (needs matplotlib)")
    p.add_argument("--keep", action="store_true", help="keep each trial's temp dir (process logs)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: --rounds 1 --pubs 1,5 --events 10000 --seconds 1.5 --fair-subs 3")
    p.add_argument("--replot", nargs="+", metavar="JSON", type=sc.json_file,
                   help="run nothing: print the tables and draw --png from these --json files (e.g. a sweep run "
                        "and a fairness run); the fairness options are the last file's")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.pubs, args.events, args.seconds, args.fair_subs = 1, "1,5", 10000, 1.5, 3
    args.pubs_list = [int(x) for x in args.pubs.split(",") if x]
    args.variants_list = [v for v in args.variants.split(",") if v]
    bad = set(args.variants_list) - {"flat", "mixed", "paced"}
    if bad:
        p.error(f"unknown variant(s): {', '.join(sorted(bad))}")
    args.systems_list = [s for s in args.systems.split(",") if s]
    return args


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def report(r: dict, t: float, label: str) -> None:
    if r["status"] != "ok":
        extra = f"{r['status'].upper()}: {r.get('why')}"
    elif r["kind"] == "sweep":
        extra = f"{r['rate']:,.0f} ev/s lost={r['lost']} srv={f(r['srv_us'], '.2f')}µs sub={f(r['sub_us'], '.2f')}µs"
    else:
        fr = r["fair"]
        extra = " ".join(f"{k}={fr[k]:.3g}" for k in FAIR_KEYS if fr.get(k) is not None)
        extra += f" lost={r['lost']} holes={r['holes']} gaps={r['gaps']} pub_dropped={r['pub_dropped']}"
    print(f"  {label} {r['system']:<7} {time.monotonic() - t:5.1f}s {extra}", flush=True)


def replot(args) -> int:
    runs = [sc.read_json(path) for path in args.replot]
    results = [r for run in runs for r in run["results"]]
    for k in ("fair_pubs", "fair_subs", "seconds", "slice", "paced_rate"):
        setattr(args, k, runs[-1]["args"][k])
    for r in results:  # recomputed: the figures may be newer than the run
        if r["kind"] != "sweep" and r["status"] == "ok":
            r["fair"] = fairness(r, r["kind"], args.paced_rate, args.seconds)
    systems = list(dict.fromkeys(r["system"] for r in results))
    pubs = sorted({r["pubs"] for r in results if r["kind"] == "sweep"})
    variants = [v for v in ("flat", "mixed", "paced") if any(r["kind"] == v for r in results)]
    sweep, fair = sweep_rows(results, systems, pubs), fair_rows(results, systems, variants)
    print(markdown(sweep, fair, args))
    if args.png:
        print(chart(sweep, fair, args.png) or f"wrote {args.png}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        return replot(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    head = sc.header("decnet-bus: cost against publishers, and fairness")
    print("\n".join(head), flush=True)
    systems = sc.systems_to_run(args.systems_list, args.decnet_args)
    results: list[dict] = []
    try:
        for rnd in range(1, args.rounds + 1):
            for p in args.pubs_list:
                for s in systems:
                    t = time.monotonic()
                    r = sc.run_trial(s, p, 1, {"events": math.ceil(args.events / p), "sub_events": args.events},
                                     keep=args.keep)
                    r.update(round=rnd, kind="sweep")
                    results.append(r)
                    report(r, t, f"round {rnd} P={p:<3}")
            for v in args.variants_list:
                # The subscribers' queues as deep as the fan-out benchmark's: they never drop.
                cfg = {"seconds": args.seconds, "slice": args.slice, "idle_timeout": 5.0, "sub_events": 2_000_000}
                if v == "mixed":
                    cfg["per_pub"] = lambda i: {"pub_rate": args.paced_rate if i else None}
                elif v == "paced":
                    cfg["pub_rate"] = args.paced_rate
                for s in systems:
                    t = time.monotonic()
                    r = sc.run_trial(s, args.fair_pubs, args.fair_subs, cfg, keep=args.keep)
                    r.update(round=rnd, kind=v)
                    if r["status"] == "ok":
                        r["fair"] = fairness(r, v, args.paced_rate, args.seconds)
                    results.append(r)
                    report(r, t, f"round {rnd} {v:<5}")
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what finished", flush=True)
    finally:
        stop_all()
    names = [s.name for s in systems]
    sweep = sweep_rows(results, names, args.pubs_list)
    fair = fair_rows(results, names, args.variants_list)
    print(f"- after: {sc.uptime()}\n")
    print(markdown(sweep, fair, args), flush=True)
    if args.json:
        sc.write_json(args.json, {"header": head, "commit": sc.git_commit(), "args": vars(args),
                                  "results": results, "sweep": sweep, "fairness": fair})
    if args.png:
        print(chart(sweep, fair, args.png) or f"wrote {args.png}")
    return 0 if all(r["status"] == "ok" for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
