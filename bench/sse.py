"""The benchmark of ``decnet web``'s live events over SSE (docs/BENCHMARKS.md).

One broker, one web process on a UNIX socket, CLIENTS event streams of one
topology spread over a few client processes (bench/sse_worker.py: raw
sockets and a minimal frame scanner), a publisher process at a fixed rate
(the helpers of decnet/bus/events.py, the send time in each payload). For
each rate: publish → client-receive latency p50/p99/p99.9, loss (frames a
healthy stream did not get, or a ``stream.resync``), the web process's CPU
per delivered frame and in % of one core; per system and client count, its
RSS per idle client; the highest rate of the scan with zero loss.

Systems, interleaved within each round (their order alternates):
``decnet`` (``decnet web``) and ``reference`` (bench/sse_reference.py: FastAPI
+ sse-starlette, one bus subscription and one encoding per client, per-send
timeout; the same bearer-token check on both). A third row, the 1 s
database poll the route replaces, is computed, not run. Figures are medians
over rounds. The ``frozen`` run adds one stream that never reads to the
clients and repeats the run at --frozen-rate: the healthy streams' p99
against the same rate without it.

    .venv/bin/python bench/sse.py                # the full run (about 7 minutes)
    .venv/bin/python bench/sse.py --quick        # a smoke run (seconds)
    .venv/bin/python bench/sse.py --json out.json
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from decnet.bus.testing import BrokerProcess, short_tmpdir
from decnet.web.testing import WebProcess, make_token

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "sse_worker.py")
TOPOLOGY = "t1"
SYSTEMS = ("decnet", "reference")


class ReferenceProcess(WebProcess):
    """bench/sse_reference.py as a child process, started and stopped as ``decnet web`` is."""

    def command(self) -> list[str]:
        return [sys.executable, str(HERE / "sse_reference.py"), "--uds", str(self.path)]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class ClientProcs:
    """The client processes of one system, driven line by line."""

    def __init__(self, uds: Path, clients: int, procs: int, token: str, workdir: Path) -> None:
        procs = max(1, min(procs, clients))
        shares = [clients // procs + (i < clients % procs) for i in range(procs)]
        self.files = [workdir / f"lat-{i}" for i in range(procs)]
        self.procs = [subprocess.Popen(
            [sys.executable, WORKER, "clients", "--uds", str(uds), "--clients", str(n), "--token", token,
             "--topology", TOPOLOGY, "--latencies", str(f)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n, f in zip(shares, self.files)]
        answers = [self._answer(p) for p in self.procs]
        self.ready = sum(a["ready"] for a in answers)
        #: The client processes' CPU seconds so far (the answers to stop carry their totals).
        self.cpu = sum(a["cpu"] for a in answers)

    def _answer(self, proc) -> dict:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a client process ended (exit code {proc.wait()})")
        return json.loads(line)

    def ask(self, command: str, procs=None) -> list[dict]:
        procs = self.procs if procs is None else procs
        for p in procs:
            p.stdin.write(command + "\n")
            p.stdin.flush()
        return [self._answer(p) for p in procs]

    def latencies(self) -> array.array:
        out = array.array("q")
        for f in self.files:
            with open(f, "rb") as fh:
                out.frombytes(fh.read())
        return out

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def percentile(sorted_values, q: float) -> Optional[float]:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_rate(broker: BrokerProcess, web: WebProcess, clients: ClientProcs, healthy: int, rate: float,
             seconds: float, drain: float) -> dict:
    """One publisher run at ``rate`` for ``seconds``: what the clients got and what the web process spent."""
    clients.ask("start")
    cpu0 = web.cpu()
    pub = subprocess.run([sys.executable, WORKER, "publish", "--bus", str(broker.path), "--topology", TOPOLOGY,
                          "--rate", str(rate), "--seconds", str(seconds)], capture_output=True, text=True)
    if pub.returncode:
        raise RuntimeError(f"the publisher failed: {pub.stderr.strip().splitlines()[-1:]}")
    sent = json.loads(pub.stdout.splitlines()[-1])
    answers = clients.ask(f"stop {drain}")
    # The delivery's time: from the first publish (not the publisher's start-up,
    # when the web process is idle) until the last stream saw the end marker.
    cpu, wall = web.cpu().since(cpu0), time.time() - sent["started"]
    client_cpu = sum(a["cpu"] for a in answers)
    client_cpu, clients.cpu = client_cpu - clients.cpu, client_cpu
    lat = sorted(clients.latencies())
    frames = sum(a["frames"] for a in answers)
    expected = sent["sent"] * healthy
    resyncs = sum(a["resyncs"] for a in answers)
    return {
        "rate": rate, "seconds": sent["elapsed"], "sent": sent["sent"], "frames": frames,
        "frames_per_s": frames / sent["elapsed"], "lost": expected - frames, "resyncs": resyncs,
        "closed": sum(a["closed"] for a in answers), "zero_loss": frames == expected and resyncs == 0,
        "p50_ms": _ms(percentile(lat, 0.50)), "p99_ms": _ms(percentile(lat, 0.99)),
        "p999_ms": _ms(percentile(lat, 0.999)),
        "wall_s": wall, "web_cpu_s": cpu, "web_us_per_frame": cpu / max(frames, 1) * 1e6,
        "web_core_pct": cpu / wall * 100, "client_core_pct": client_cpu / wall * 100, "load": load(),
    }


def _ms(ns: Optional[int]) -> Optional[float]:
    return None if ns is None else ns / 1e6


def run_system(system: str, broker: BrokerProcess, mode: str, n: int, rates: list[float], args, log) -> dict:
    """One web process of ``system`` with ``n`` clients: its RSS per idle
    client, then each rate (a scan stops after its first rate with loss); in
    mode ``frozen``, one run at the rate, then one stream that never reads
    and the same run again."""
    cls = WebProcess if system == "decnet" else ReferenceProcess
    workdir = short_tmpdir("ssebench-")
    out: dict = {"system": system, "mode": mode, "clients": n, "runs": []}
    with cls(broker.path) as web:
        rss0 = web.rss()
        clients = ClientProcs(web.path, n, args.client_procs, make_token(), workdir)
        try:
            if clients.ready != n:
                raise RuntimeError(f"{system}: {clients.ready} of {n} streams got stream.ready")
            out["rss_per_idle_client_kib"] = (web.rss() - rss0) / n / 1024
            for rate in rates:
                r = run_rate(broker, web, clients, n, rate, args.seconds, args.drain)
                log(f"  {system:9} {mode:6} {n:5} clients {rate:6g} ev/s: {r['frames_per_s']:7.0f} frames/s"
                    f" lost {r['lost']} resync {r['resyncs']} p50 {_f(r['p50_ms'])} p99 {_f(r['p99_ms'])}"
                    f" p99.9 {_f(r['p999_ms'])} ms, web {r['web_us_per_frame']:.1f} us/frame"
                    f" {r['web_core_pct']:.0f} %core, clients {r['client_core_pct']:.0f} %core, load {r['load']}")
                out["runs"].append(r)
                if mode == "scan" and not r["zero_loss"] and rate != rates[0]:
                    break  # the scan found its ceiling
            if mode == "frozen":
                clients.ask("freeze", clients.procs[:1])
                # Fill the frozen stream's socket first, so the measured run has a send that waits.
                run_rate(broker, web, clients, n, rates[0] * 4, 1.0, args.drain)
                r = run_rate(broker, web, clients, n, rates[0], args.seconds, args.drain)
                log(f"  {system:9} {mode:6} {n:5} clients + 1 frozen {rates[0]:g} ev/s: lost {r['lost']}"
                    f" p50 {_f(r['p50_ms'])} p99 {_f(r['p99_ms'])} ms, web {r['web_core_pct']:.0f} %core,"
                    f" load {r['load']}")
                out["frozen"] = r
        finally:
            clients.close()
    return out


def _f(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rounds: list[list[dict]]) -> dict:
    """Medians over rounds, per (system, clients, rate)."""
    table: dict = {}
    for rnd in rounds:
        for res in rnd:
            key = (res["system"], res["mode"], res["clients"])
            entry = table.setdefault(key, {"rss": [], "runs": {}, "frozen": [], "ceiling": []})
            entry["rss"].append(res["rss_per_idle_client_kib"])
            zero = [r["rate"] for r in res["runs"] if r["zero_loss"]]
            entry["ceiling"].append(max(zero) if zero else 0)
            for r in res["runs"]:
                entry["runs"].setdefault(r["rate"], []).append(r)
            if "frozen" in res:
                entry["frozen"].append(res["frozen"])
    out = {}
    fields = ("frames_per_s", "lost", "resyncs", "p50_ms", "p99_ms", "p999_ms", "web_us_per_frame", "web_core_pct",
              "client_core_pct")
    for (system, mode, n), entry in table.items():
        runs = {rate: {f: median([r[f] for r in rs]) for f in fields} | {
                    "zero_loss_rounds": sum(r["zero_loss"] for r in rs), "rounds": len(rs)}
                for rate, rs in sorted(entry["runs"].items())}
        frozen = ({f: median([r[f] for r in entry["frozen"]]) for f in fields} | {"rate": entry["frozen"][0]["rate"]}
                  if entry["frozen"] else None)
        out[f"{system}/{mode}/{n}"] = {"system": system, "mode": mode, "clients": n, "rss_per_idle_client_kib": median(entry["rss"]),
                                "highest_zero_loss_rate": median(entry["ceiling"]), "runs": runs, "frozen": frozen}
    return out


def poll_reference(n: int, interval: float = 1.0) -> dict:
    """The 1 s database poll, computed: an event waits for the client's next
    poll, uniform over the interval (the query's own time left out); one
    query per client per interval."""
    return {"p50_ms": interval * 500, "p99_ms": interval * 990, "p999_ms": interval * 999,
            "queries_per_s": n / interval}


def fmt(value, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


MODES = {"scan": "scan", "many": "many clients", "frozen": "frozen"}


def markdown(summary: dict) -> str:
    """The tables: every run's medians, then memory and ceilings, then the targets."""
    lines = ["| run | system | clients | ev/s | frames/s | lost | p50 ms | p99 ms | p99.9 ms | web µs/frame "
             "| web % core | clients % core |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def row(run: str, system: str, n, rate, r: dict) -> str:
        lost = fmt(r["lost"], ".0f") + (f" ({r['resyncs']:.0f} resync)" if r["resyncs"] else "")
        lossy = r.get("rounds", 1) - r.get("zero_loss_rounds", 1)
        if lossy:
            lost += f", loss in {lossy} of {r['rounds']} rounds"
        return (f"| {run} | {system} | {n} | {rate:g} | {fmt(r['frames_per_s'], ',.0f')} | {lost} | "
                f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['p999_ms'])} | "
                f"{fmt(r['web_us_per_frame'], '.1f')} | {fmt(r['web_core_pct'], '.0f')} | "
                f"{fmt(r['client_core_pct'], '.0f')} |")

    for mode in MODES:
        for s in (s for s in summary.values() if s["mode"] == mode):
            for rate, r in s["runs"].items():
                lines.append(row(MODES[mode], s["system"], s["clients"], rate, r))
            if s["frozen"]:
                lines.append(row("frozen", s["system"], f"{s['clients']} + 1 frozen", s["frozen"]["rate"], s["frozen"]))
    for n in sorted({s["clients"] for s in summary.values() if s["mode"] != "frozen"}):
        p = poll_reference(n)
        lines.append(f"| computed | 1 s database poll | {n} | any | – | 0 | {p['p50_ms']:.0f} | {p['p99_ms']:.0f} | "
                     f"{p['p999_ms']:.0f} | {p['queries_per_s']:,.0f} queries/s | – | – |")
    lines += ["", "| system | clients | RSS per idle client | highest rate of the scan with zero loss "
              "| … and p99 < 100 ms |", "|---|---:|---:|---:|---:|"]
    for s in summary.values():
        if s["mode"] == "frozen":
            continue
        ceiling = fast = "–"
        if s["mode"] == "scan":
            top = s["highest_zero_loss_rate"] or 0
            at = s["runs"].get(top)
            ceiling = f"{top:g} ev/s ({top * s['clients']:,.0f} frames/s)" + (
                f", p99 {fmt(at['p99_ms'])} ms" if at else "")
            quick = [rate for rate, r in s["runs"].items()
                     if r["zero_loss_rounds"] == r["rounds"] and r["p99_ms"] is not None and r["p99_ms"] < 100]
            fast = f"{max(quick):g} ev/s ({max(quick) * s['clients']:,.0f} frames/s)" if quick else "none"
        lines.append(f"| {s['system']} | {s['clients']} | {fmt(s['rss_per_idle_client_kib'], '.1f')} KiB "
                     f"| {ceiling} | {fast} |")
    checks = targets(summary)
    if checks:
        lines += ["", "| target (decnet) | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in checks]
    return "\n".join(lines)


def targets(summary: dict) -> list[tuple[str, str, bool]]:
    """The targets of docs/BENCHMARKS.md against decnet's medians (those its runs cover)."""
    out = []
    scan = next((s for s in summary.values() if s["system"] == "decnet" and s["mode"] == "scan"), None)
    many = next((s for s in summary.values() if s["system"] == "decnet" and s["mode"] == "many"), None)
    frozen = next((s for s in summary.values() if s["system"] == "decnet" and s["mode"] == "frozen"), None)

    def clean(r: dict) -> bool:
        return r["zero_loss_rounds"] == r["rounds"]

    if scan:
        n = scan["clients"]
        fast = [(rate, r) for rate, r in scan["runs"].items() if rate * n >= 150_000]
        if fast:
            rate, r = fast[0]
            out.append((f"≥ 150,000 frames/s with zero loss and p99 < 100 ms ({n} clients)",
                        f"{rate * n:,.0f} frames/s, zero loss in {r['zero_loss_rounds']} of {r['rounds']} rounds,"
                        f" p99 {fmt(r['p99_ms'])} ms", clean(r) and r["p99_ms"] < 100))
        if 100 in scan["runs"]:
            r = scan["runs"][100]
            out.append((f"≤ 20 µs of web CPU per frame at {n} × 100 ev/s", f"{r['web_us_per_frame']:.1f} µs",
                        r["web_us_per_frame"] <= 20))
        r = next((r for rate, r in scan["runs"].items() if rate * n == 40_000), None)
        if r:
            out.append(("40,000 frames/s using ≤ 50 % of a core with p99 ≤ 10 ms",
                        f"{r['web_core_pct']:.0f} % of a core, p99 {fmt(r['p99_ms'])} ms",
                        clean(r) and r["web_core_pct"] <= 50 and r["p99_ms"] <= 10))
        out.append((f"idle RSS ≤ 16 KiB per client ({n} clients)", f"{scan['rss_per_idle_client_kib']:.1f} KiB",
                    scan["rss_per_idle_client_kib"] <= 16))
    if many and 10 in many["runs"]:
        r = many["runs"][10]
        out.append((f"{many['clients']:,} clients × 10 ev/s: zero loss, p99 ≤ 30 ms, ≤ 25 % of a core",
                    f"lost {r['lost']:.0f}, p99 {fmt(r['p99_ms'])} ms, {r['web_core_pct']:.0f} % of a core",
                    clean(r) and r["p99_ms"] <= 30 and r["web_core_pct"] <= 25))
    if many:
        out.append((f"idle RSS ≤ 16 KiB per client ({many['clients']:,} clients)",
                    f"{many['rss_per_idle_client_kib']:.1f} KiB", many["rss_per_idle_client_kib"] <= 16))
    if frozen and frozen["frozen"]:
        base = next(iter(frozen["runs"].values()))
        f = frozen["frozen"]
        out.append(("a frozen client changes the healthy clients' p99 by ≤ 2×",
                    f"p99 {fmt(base['p99_ms'])} → {fmt(f['p99_ms'])} ms, lost {f['lost']:.0f}",
                    f["lost"] == 0 and f["p99_ms"] <= 2 * base["p99_ms"]))
    return out


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of rates: {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be > 0 events/s: {text!r}")
    return rates


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + ": decnet web against FastAPI + sse-starlette, see docs/BENCHMARKS.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each runs every system once (order alternating), the table shows medians")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds the publisher runs at each rate")
    parser.add_argument("--clients", type=int, default=100, help="streams of the rate scan and the frozen run")
    parser.add_argument("--rates", type=parse_rates, default=parse_rates("100,400,1000,1500,2000,3000"),
                        help="events/s of the scan with --clients streams, ascending; a system's scan stops at "
                             "its first rate with loss (the first rate always runs)")
    parser.add_argument("--many", type=int, default=1000, help="streams of the many-clients run (0: skip it)")
    parser.add_argument("--many-rates", type=parse_rates, default=parse_rates("10"),
                        help="events/s of the many-clients run")
    parser.add_argument("--frozen-rate", type=float, default=400.0,
                        help="events/s of the run with one frozen stream among --clients (0: skip it); compare "
                             "with the scan's row at the same rate")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="client processes the streams are spread over (none is the web process)")
    parser.add_argument("--drain", type=float, default=15.0,
                        help="seconds the clients wait, after the publisher ends, for the end marker on every stream")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated systems to run, of {', '.join(SYSTEMS)}")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round of 1 s, 10 and 20 streams, rates 50,200, frozen at 50, drain 10 s "
                             "(options given beside it still apply)")
    parser.add_argument("--json", metavar="FILE", help="also write every run and the medians to FILE as JSON")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(rounds=1, seconds=1.0, clients=10, rates=[50.0, 200.0], many=20, many_rates=[50.0],
                            frozen_rate=50.0, drain=10.0)
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown or not args.systems:
        parser.error(f"--systems: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(SYSTEMS)}")
    if args.rounds < 1 or args.seconds <= 0 or args.clients < 1 or args.many < 0 or args.client_procs < 1:
        parser.error("--rounds, --clients and --client-procs must be >= 1, --seconds > 0, --many >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load()}")
    rounds = []
    with BrokerProcess() as broker:
        for i in range(args.rounds):
            order = list(args.systems) if i % 2 == 0 else list(reversed(args.systems))
            log(f"round {i + 1}/{args.rounds} (load {load()})")
            results = []
            for system in order:
                results.append(run_system(system, broker, "scan", args.clients, args.rates, args, log))
            if args.many:
                for system in order:
                    results.append(run_system(system, broker, "many", args.many, args.many_rates, args, log))
            if args.frozen_rate:
                for system in order:
                    results.append(run_system(system, broker, "frozen", args.clients, [args.frozen_rate], args, log))
            rounds.append(results)
    summary = summarize(rounds)
    print(markdown(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "rounds": rounds,
                                               "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
