#!/usr/bin/env python3
"""How the broker's CPU per publish grows with the subscriptions it holds.

1,000 connections (held by ``--workers`` processes, bench/scale_worker.py)
hold S subscriptions in all; one paced publisher sends ``--events`` events
on topics ``s.gGG.kKKK`` (G = 0..99, K = 0..63: 6,400 topics, cycled with
the group changing fastest). The broker caches the lookup result of the last
1,024 topics (``SubscriptionIndex``, first in first out), so a cycle of
6,400 topics misses the cache on every event: each publish pays the trie walk.

Two series, S in ``--sizes``:

- ``pct`` (1 % matching): S/100 subscriptions per group, all wildcards over
  the group in four shapes, ``s.gGG.*``, ``s.gGG.>``, ``*.gGG.*``,
  ``*.gGG.>`` (redis globs ``s.gGG.*``, ``s.gGG.k*``, ``*.gGG.*``,
  ``*gGG.k*``), each on a different connection: every event matches exactly
  1 % of the subscriptions, one delivery per matching subscription. A
  literal pattern cannot be in this series: it matches one topic of 6,400.
- ``fixed`` (10 matching + filler): 10 connections subscribe to patterns
  matching every event (``s.>``, ``s.*.*``, ``*.*.*``, ``>`` ...); the other
  S - 10 subscriptions match nothing published, half literal
  (``s.gGG.zJJJJJ``, in the very branch each lookup walks), half wildcard
  (``*.gGG.zJJJJJ``). So the deliveries per publish stay 10 while the
  non-matching subscriptions grow from 90 to 9,990: what a lookup costs per
  subscription that does not match.

Each trial starts a fresh server, connects and subscribes everything, reads
the server's CPU time (``decnet.bus.testing.cpu_time``: schedstat, all
threads), publishes at ``--rate`` events/s in batches of ``--batch`` frames
(one ``sendall`` each), waits until the workers have counted every expected
delivery (or 5 s pass without progress), reads the CPU time again. Reported:
server CPU per publish and per delivery over that span, the deliveries each
connection got against what its patterns match (lost = fewer, extra =
more), server RSS after subscribing, and the server's write-like system
calls per publish (/proc/PID/io: libuv's ``writev``; redis and Go use
``write`` too, so theirs count as well). Systems and series interleave within a
round; tables are medians over ``--rounds`` with the range. Redis matches
patterns by walking every one of them per publish, so it runs at
``--redis-rate`` for ``--redis-events``.

    .venv/bin/python bench/scale_subscriptions.py --quick
    .venv/bin/python bench/scale_subscriptions.py --json /tmp/subs.json --png docs/scale-subscriptions.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

from scale_common import choices, int_list
from scale_servers import ROOT, Server, Trial, Workers, load, machine_info, stop_many, _live

from decnet.bus.protocol import encode
from decnet.bus.testing import syscalls

#: Runs only with --baseline: the decnet broker of another checkout.
BASELINE = "decnet-base"
GROUPS = 100
KEYS = 64
MATCHING = 10  # subscriptions matching every event in the fixed series
BODY = b'{"p":"' + b"x" * 92 + b'"}'  # 100 bytes
SHAPES = {
    "decnet": ["s.g{g:02d}.*", "s.g{g:02d}.>", "*.g{g:02d}.*", "*.g{g:02d}.>"],
    "redis": ["s.g{g:02d}.*", "s.g{g:02d}.k*", "*.g{g:02d}.*", "*g{g:02d}.k*"],
}
SHAPES["nats"] = SHAPES["decnet"]
MATCH_ALL = {
    "decnet": ["s.>", "s.*.*", "*.*.*", "s.*.>", "*.*.>", ">", "*.>", "s.>", "s.*.*", "*.*.*"],
    "redis": ["*", "s.*", "s.g*", "*.k*", "s.g*.k*", "*", "s.*", "s.g*", "*.k*", "s.g*.k*"],
}
MATCH_ALL["nats"] = MATCH_ALL["decnet"]


def topic(e: int) -> str:
    return f"s.g{e % GROUPS:02d}.k{(e // GROUPS) % KEYS:03d}"


def plan(system: str, mode: str, total: int, conns: int, events: int) -> tuple[list[list[str]], list[int]]:
    """Each connection's patterns, and the events each must receive."""
    patterns: list[list[str]] = [[] for _ in range(conns)]
    expect = [0] * conns
    if mode == "pct":
        per_group = total // GROUPS
        for g in range(GROUPS):
            got = len(range(g, events, GROUPS))
            for r in range(per_group):
                c = (g * per_group + r) % conns
                patterns[c].append(SHAPES[system][r % 4].format(g=g))
                expect[c] += got
    else:
        for c in range(MATCHING):
            patterns[c].append(MATCH_ALL[system][c])
            expect[c] = events
        for j in range(total - MATCHING):
            g = j % GROUPS
            patterns[(MATCHING + j) % conns].append(f"{'s' if j % 2 == 0 else '*'}.g{g:02d}.z{j:05d}")
    return patterns, expect


# ------------------------------------------------------------------ publisher


class Publisher:
    """A blocking publisher on one connection: pre-encoded frames, paced batches."""

    def __init__(self, system: str, address: str) -> None:
        self.system = system
        self.drainer = None
        if system == "nats":
            host, port = address.rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)))
            self._until(b"\r\n")  # INFO
            self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"scale-pub"}\r\n')
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(address)
            if system == "decnet":
                self.sock.sendall(encode("HELLO", None, json.dumps({"v": 1, "name": "scale-pub", "pid": os.getpid(), "echo": False}).encode()))
                self._until(b"}")
            else:  # PUBLISH answers with the receiver count: read it away
                self.drainer = threading.Thread(target=self._drain, daemon=True)
                self.drainer.start()

    def _until(self, end: bytes) -> None:
        got = b""
        while end not in got:
            got += self.sock.recv(4096)

    def _drain(self) -> None:
        try:
            while self.sock.recv(1 << 16):
                pass
        except OSError:
            pass

    def frame(self, t: str) -> bytes:
        if self.system == "decnet":
            return encode("PUB", t, BODY)
        if self.system == "nats":
            return b"PUB %s %d\r\n%s\r\n" % (t.encode(), len(BODY), BODY)
        return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(t), t.encode(), len(BODY), BODY)

    def run(self, events: int, rate: float, batch: int) -> float:
        """Send ``events`` at ``rate``/s, ``batch`` frames per sendall; seconds taken."""
        batches = [b"".join(self.frame(topic(e)) for e in range(s, min(events, s + batch))) for s in range(0, events, batch)]
        step = batch / rate
        start = time.monotonic()
        due = start
        for data in batches:
            self.sock.sendall(data)
            due += step
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        return time.monotonic() - start

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ one trial


def trial(system: str, mode: str, total: int, args) -> dict:
    events = args.redis_events if system == "redis" else args.events
    rate = args.redis_rate if system == "redis" else args.rate
    res = {"system": system, "mode": mode, "subs": total, "events": events, "rate": rate, "conns": args.conns,
           "load_before": round(load(), 2)}
    kind = "decnet" if system == BASELINE else system
    with Trial(res, f"scale-subs-{system}-") as scope:
        server = scope.own(Server(kind, scope.tmp, root=args.baseline if system == BASELINE else ROOT), "stop")
        time.sleep(0.3)
        rss0 = server.rss()
        patterns, expect = plan(kind, mode, total, args.conns, events)
        t = time.monotonic()
        workers = scope.own(Workers(kind, server.address, patterns, args.workers, scope.tmp))
        res["setup_s"] = round(time.monotonic() - t, 2)
        time.sleep(0.5)
        res["rss_mib"] = round(server.rss() / 2**20, 2)
        res["rss_per_sub_b"] = round((server.rss() - rss0) / total)
        c0 = server.cpu()
        time.sleep(1.0)
        res["idle_cpu_pct"] = round((server.cpu() - c0) * 100, 3)
        pub = scope.own(Publisher(kind, server.address))
        want = sum(expect)
        spy = None
        if args.py_spy and kind == "decnet":
            out = os.path.join(args.py_spy, f"{system}-{mode}-{total}.txt")
            spy = subprocess.Popen(["py-spy", "record", "--native", "-r", "500", "-p", str(server.pid), "-d",
                                    str(int(events / rate) + 1), "-f", "raw", "-o", out],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        io0 = syscalls(server.pid)
        cpu0, t0 = server.cpu(), time.monotonic()
        res["publish_s"] = round(pub.run(events, rate, args.batch), 3)
        got, seen, progress = 0, -1, time.monotonic()
        while True:
            counts = workers.counts()
            got = sum(counts)
            if got >= want:
                break
            if got != seen:
                seen, progress = got, time.monotonic()
            elif time.monotonic() - progress > 5:
                break
            time.sleep(0.1)
        cpu1, t1 = server.cpu(), time.monotonic()
        io1 = syscalls(server.pid)
        if spy is not None:
            spy.wait(30)
        # Linux's syscr/syscw: read/write/readv/writev (libuv's), not recv/send (redis, Go).
        res["reads_per_publish"] = round((io1[0] - io0[0]) / events, 3)
        res["writes_per_publish"] = round((io1[1] - io0[1]) / events, 3)
        time.sleep(0.3)
        counts = workers.counts()  # anything past the expected number counts as extra
        res["span_s"] = round(t1 - t0, 3)
        res["cpu_s"] = round(cpu1 - cpu0, 4)
        res["matching_per_event"] = want / events
        res["expected"] = want
        res["delivered"] = sum(counts)
        res["lost"] = sum(max(0, e - c) for e, c in zip(expect, counts))
        res["extra"] = sum(max(0, c - e) for e, c in zip(expect, counts))
        res["us_per_publish"] = round((cpu1 - cpu0) / events * 1e6, 3)
        res["us_per_delivery"] = round((cpu1 - cpu0) / max(1, want) * 1e6, 4)
    return res


# ------------------------------------------------------------------ report


def medians(results: list[dict]) -> list[dict]:
    rows = []
    keys = list(dict.fromkeys((r["mode"], r["subs"], r["system"]) for r in results))
    for mode, subs, system in sorted(keys, key=lambda k: (k[0] != "pct", k[2] != "decnet", k[2], k[1])):
        ok = [r for r in results if (r["mode"], r["subs"], r["system"]) == (mode, subs, system) and r.get("status") == "ok"]
        if not ok:
            continue
        row = {"mode": mode, "subs": subs, "system": system, "rounds": len(ok),
               "matching_per_event": ok[0]["matching_per_event"], "lost": [r["lost"] for r in ok], "extra": [r["extra"] for r in ok]}
        for k in ("us_per_publish", "us_per_delivery", "rss_mib", "rss_per_sub_b", "setup_s", "idle_cpu_pct", "writes_per_publish"):
            vals = [r[k] for r in ok if r.get(k) is not None]
            row[k] = statistics.median(vals) if vals else None
            row[k + "_range"] = (min(vals), max(vals)) if vals else None
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| series | system | subscriptions | matching per event | server µs/publish (median, range) | server µs/delivery | server writes/publish | lost | extra | RSS MiB |",
           "|---|---|---:|---:|---|---:|---:|---|---|---:|"]
    for r in rows:
        lo, hi = r["us_per_publish_range"]
        out.append(f"| {r['mode']} | {r['system']} | {r['subs']:,} | {r['matching_per_event']:g} | "
                   f"{r['us_per_publish']:.2f} ({lo:.2f}–{hi:.2f}) | {r['us_per_delivery']:.3f} | "
                   f"{'—' if r['writes_per_publish'] is None else format(r['writes_per_publish'], '.2f')} | "
                   f"{'/'.join(map(str, r['lost']))} | {'/'.join(map(str, r['extra']))} | {r['rss_mib']:.1f} |")
    return "\n".join(out) + "\n"


def chart(rows: list[dict], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    colours = {"decnet": "#1f77b4", BASELINE: "#7f7f7f", "nats": "#2ca02c", "redis": "#d62728"}
    panels = [("pct", "us_per_publish", "1 % matching: server CPU per publish"),
              ("pct", "us_per_delivery", "1 % matching: server CPU per delivery"),
              ("fixed", "us_per_publish", "10 matching + non-matching filler:\nserver CPU per publish")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, (mode, metric, title) in zip(axes, panels):
        for system in ("decnet", BASELINE, "nats", "redis"):
            pts = sorted((r["subs"], r[metric], r[metric + "_range"]) for r in rows if r["mode"] == mode and r["system"] == system)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            err = [[y - p[2][0] for y, p in zip(ys, pts)], [p[2][1] - y for y, p in zip(ys, pts)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colours[system], label=system)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscriptions held by the server (1,000 connections)")
        ax.set_ylabel("µs of server CPU")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Server CPU as subscriptions grow (every lookup misses the topic cache); median of rounds, bars: range", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ------------------------------------------------------------------ main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="decnet,nats,redis", type=choices("decnet", "nats", "redis"), help="comma list of decnet, nats, redis (default: all three)")
    p.add_argument("--baseline", metavar="CHECKOUT",
                   help=f"also run {BASELINE}: the broker of this checkout (built in place), interleaved with decnet")
    p.add_argument("--modes", default="pct,fixed", type=choices("pct", "fixed"), help="series: pct (1 %% matching), fixed (10 matching + filler)")
    p.add_argument("--sizes", default="100,1000,3000,10000", type=int_list(100), help="total subscriptions, comma list (multiples of 100)")
    p.add_argument("--conns", type=int, default=1000, help="connections holding them (default 1000)")
    p.add_argument("--workers", type=int, default=4, help="processes holding the connections (default 4)")
    p.add_argument("--events", type=int, default=20000, help="events published per trial (default 20000)")
    p.add_argument("--rate", type=float, default=5000, help="events/s (default 5000)")
    p.add_argument("--batch", type=int, default=100, help="frames per sendall (default 100)")
    p.add_argument("--redis-events", type=int, default=3000, help="events per redis trial (default 3000)")
    p.add_argument("--redis-rate", type=float, default=1000, help="redis events/s (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; systems and series interleave in each (default 3)")
    p.add_argument("--quick", action="store_true", help="a smoke run: sizes 100,1000, 2,000 events, 1 round, 200 connections")
    p.add_argument("--py-spy", metavar="DIR", help="profile each decnet broker while it routes (py-spy record --native, "
                   "raw collapsed stacks in DIR; py-spy on PATH); its sampling costs the broker CPU, so not with the measured runs")
    p.add_argument("--json", help="write every trial and the medians here")
    p.add_argument("--png", help="write the chart here")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.events, args.redis_events, args.rounds, args.conns = "100,1000", 2000, 500, 1, 200
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s != "decnet" and not shutil.which(f"{s}-server"):
            print(f"{s}-server not found: skipped (bash bench/peers.sh installs it)", file=sys.stderr)
    systems = [s for s in systems if s == "decnet" or shutil.which(f"{s}-server")]
    if args.baseline:
        systems.insert(1, BASELINE)
    sizes = [int(x) for x in args.sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    info = machine_info()
    results = []
    started = time.time()
    print(f"load {load():.2f}", flush=True)
    try:
        for rnd in range(args.rounds):
            order = systems if rnd % 2 == 0 else systems[::-1]
            for total in sizes:
                for mode in modes:
                    for system in order:
                        r = trial(system, mode, total, args)
                        r["round"] = rnd
                        results.append(r)
                        print(json.dumps({k: r.get(k) for k in ("round", "system", "mode", "subs", "status", "us_per_publish",
                                                               "us_per_delivery", "lost", "extra", "setup_s", "rss_mib", "load_before")}), flush=True)
    finally:
        stop_many(list(_live))
    rows = medians(results)
    print(markdown(rows))
    print(f"load {load():.2f}; {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": info, "trials": results, "rows": rows}, f, indent=1)
    if args.png:
        why = chart(rows, args.png)
        if why:
            print(why, file=sys.stderr)
    return 0 if all(r.get("status") == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
