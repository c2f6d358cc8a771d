#!/usr/bin/env python3
"""Federation benchmark: host A -> NATS -> host B through `decnet bus bridge`,
against nats-py publishing and subscribing directly on the same nats-server.

One run starts one nats-server on 127.0.0.1, two brokers on separate sockets
("host A" and "host B") and one bridge each (A: ``--export 'decky.>'``, B:
``--import 'decky.>'``); they stay up for the whole run. Each trial starts a
subscriber process and a publisher process that use the public clients:

- ``bridge``: the publisher does ``UnixBus.publish`` on broker A, the
  subscriber ``async for evt in bus.subscribe('decky.>')`` on broker B;
- ``nats``:   the publisher does ``nc.publish`` of the same bytes on
  ``ref.decky.<k>.state``, the subscriber ``nc.subscribe('ref.decky.>')``,
  on the same nats-server (the reference);
- ``local``:  (only with ``--systems``) publisher and subscriber on broker A,
  no bridge: what the two hosts' buses add by themselves.

Payloads are ~200-byte JSON objects ({"seq", "ts", "pad"}) on
``decky.d<k>.state``, k = 0..99 round-robin; ``ts`` is the send time
(CLOCK_MONOTONIC, shared by the processes); the subscriber decodes each one.

Phase 1, latency: ``--rate`` events/s (1,000) for ``--latency-seconds``;
p50/p99 of the one-way latency; systems interleaved, ``--rounds`` times.
Phase 2, throughput: a paced publisher, the rate stepped up along
``--rates``; at each step every system still in the race runs once
(interleaved); a system leaves the race at its first trial that loses an
event or whose publisher or deliveries fall 10% short of the rate (a
backlog the queues absorbed shows there). Its throughput is the highest
delivered rate with zero loss. ``local`` runs in the latency phase only.

CPU: each bridge's and nats-server's CPU time over a trial (psutil via
decnet.bus.testing.cpu_time) divided by the events delivered. Each trial
records the 1-minute load average at its start (the machine may be shared):
compare only ratios within one run.

    .venv/bin/python bench/bridge.py --quick
    .venv/bin/python bench/bridge.py --json /tmp/bridge.json --out /tmp/bridge.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYSTEMS = ["bridge", "nats", "local"]
PAD = "x" * 150
DECKIES = [f"d{k:02d}" for k in range(100)]
#: The subscriber ends a trial after this long without an event, once events flowed.
IDLE = 3.0
#: A trial whose publisher sends below this share of the asked rate says the publisher, not the path, is the limit.
SHORT = 0.9


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def pct(sorted_samples: list, p: float) -> float:
    k = (len(sorted_samples) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (k - lo)


# ---------------------------------------------------------------- client processes


def _loop_run(coro):
    import uvloop

    return uvloop.run(coro)


def subscriber(kind: str, addr: str, ready, warm, out) -> None:
    """Count the events, their holes and their one-way latency; report on the end marker or when idle."""
    import orjson

    monotonic = time.monotonic
    stats = {"n": 0, "holes": 0, "next": 0, "first": None, "last": None, "lat": []}

    def on_body(payload: dict, now: float) -> bool:
        seq = payload["seq"]
        if seq < 0:
            if seq == -2:
                warm.set()
                return False
            return True  # the end marker
        if seq != stats["next"]:
            stats["holes"] += 1
        stats["next"] = seq + 1
        stats["n"] += 1
        if stats["first"] is None:
            stats["first"] = now
        stats["last"] = now
        stats["lat"].append(now - payload["ts"])
        return False

    async def watchdog(finished: asyncio.Event) -> None:
        while not finished.is_set():
            await asyncio.sleep(0.2)
            last = stats["last"]
            if last is not None and monotonic() - last > IDLE:
                finished.set()

    async def main() -> None:
        finished = asyncio.Event()
        cpu0 = time.process_time()
        if kind == "nats":
            import nats

            nc = await nats.connect(addr, name="bench-sub", max_reconnect_attempts=0)

            async def cb(msg) -> None:
                if on_body(orjson.loads(msg.data), monotonic()):
                    finished.set()

            await nc.subscribe("ref.decky.>", cb=cb)
            await nc.flush()
            ready.put(1)
            dog = asyncio.ensure_future(watchdog(finished))
            await finished.wait()
            dog.cancel()
            await nc.close()
        else:
            from decnet.bus import UnixBus

            bus = UnixBus(addr, name="bench-sub")
            async with bus.subscribe("decky.>", maxsize=65536) as sub:
                ready.put(1)

                async def read() -> None:
                    async for evt in sub:
                        if not evt.gap and on_body(evt.payload, monotonic()):
                            finished.set()
                            return

                reader = asyncio.ensure_future(read())
                dog = asyncio.ensure_future(watchdog(finished))
                await finished.wait()  # the end marker, or idle: the reader is cancelled
                reader.cancel()
                dog.cancel()
            await bus.close()
        lat = sorted(stats["lat"])
        out.put({"n": stats["n"], "holes": stats["holes"], "first": stats["first"], "last": stats["last"],
                 "cpu": time.process_time() - cpu0,
                 "p50": pct(lat, 50) if lat else None, "p99": pct(lat, 99) if lat else None,
                 "max": lat[-1] if lat else None})

    _loop_run(main())


def publisher(kind: str, addr: str, rate: float, total: int, warm, out) -> None:
    """Warm the path up until the subscriber saw an event, then ``total`` events at ``rate``/s, then end markers."""
    import orjson

    monotonic = time.monotonic

    async def main() -> None:
        if kind == "nats":
            import nats

            nc = await nats.connect(addr, name="bench-pub", max_reconnect_attempts=0)
            subjects = [f"ref.decky.{d}.state" for d in DECKIES]
            dumps = orjson.dumps

            async def send(k: int, payload: dict) -> None:
                await nc.publish(subjects[k], dumps(payload))

            async def finish() -> None:
                await nc.flush()
                await nc.close()
        else:
            from decnet.bus import UnixBus

            bus = UnixBus(addr, name="bench-pub")
            await bus.connect()
            topics = [f"decky.{d}.state" for d in DECKIES]

            async def send(k: int, payload: dict) -> None:
                await bus.publish(topics[k], payload)

            async def finish() -> None:
                await bus.flush()
                await bus.close()

        deadline = monotonic() + 20
        while not warm.is_set():  # the path is live once one warm-up event crossed
            if monotonic() > deadline:
                out.put({"error": "no warm-up event reached the subscriber in 20 s"})
                return
            await send(0, {"seq": -2, "ts": monotonic(), "pad": PAD})
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # warm-ups in flight arrive before the first counted event
        cpu0 = time.process_time()
        t0 = monotonic()
        for i in range(total):
            # Event i is due at t0 + i/rate: sleep only while ahead, never spin
            # (a busy publisher would take a core from the path it measures).
            delay = t0 + i / rate - monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            await send(i % 100, {"seq": i, "ts": monotonic(), "pad": PAD})
        t_sent = monotonic()
        for _ in range(3):
            await send(0, {"seq": -1, "ts": 0.0, "pad": PAD})
        await finish()
        out.put({"t0": t0, "t_sent": t_sent, "cpu": time.process_time() - cpu0})

    _loop_run(main())


# ---------------------------------------------------------------- the simulated hosts


class Hosts:
    """nats-server, brokers A and B, bridges A (export) and B (import), up for the whole run."""

    def __init__(self, tmp: str) -> None:
        from decnet.bus.testing import BrokerProcess
        from decnet.bus.testing.federation import BridgeProcess, NatsServer

        self.nats = NatsServer(workdir=tmp).start()
        self.a = BrokerProcess(os.path.join(tmp, "a.sock"), "--log-level", "warning", workdir=tmp).start()
        self.b = BrokerProcess(os.path.join(tmp, "b.sock"), "--log-level", "warning", workdir=tmp).start()
        common = ("--log-level", "warning", "--health-interval", "1")
        self.bridge_a = BridgeProcess(self.a.path, self.nats.url, "--name", "host-a", "--export", "decky.>",
                                      *common).start()
        self.bridge_b = BridgeProcess(self.b.path, self.nats.url, "--name", "host-b", "--import", "decky.>",
                                      *common).start()
        for path, name in ((self.a.path, "host-a"), (self.b.path, "host-b")):
            deadline = time.monotonic() + 30
            while not health(path, name)["live"]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bridge {name} not live after 30 s")

    def cpu(self) -> dict:
        from decnet.bus.testing import cpu_time

        return {"bridge_a": cpu_time(self.bridge_a.pid), "bridge_b": cpu_time(self.bridge_b.pid),
                "broker_a": cpu_time(self.a.pid), "broker_b": cpu_time(self.b.pid),
                "nats_server": cpu_time(self.nats.pid)}

    def close(self) -> None:
        for part in (self.bridge_a, self.bridge_b):
            part.stop()
        for part in (self.a, self.b):
            part.stop()
        self.nats.close()


def health(path, name: str) -> dict:
    """The next heartbeat of bridge ``name`` on the broker at ``path``."""
    from decnet.bus import UnixBus

    async def main() -> dict:
        bus = UnixBus(path, name="bench-health")
        try:
            async with bus.subscribe(f"system.bridge.{name}.health") as sub:
                async for evt in sub:
                    if not evt.gap:
                        return evt.payload
        finally:
            await bus.close()

    return asyncio.run(asyncio.wait_for(main(), 10))


def trial(hosts: Hosts, system: str, rate: float, total: int) -> dict:
    """One publisher -> one subscriber run; counts, latency, CPU per event."""
    ctx = mp.get_context("fork")
    addr = {"bridge": (hosts.a.path, hosts.b.path), "local": (hosts.a.path, hosts.a.path),
            "nats": (hosts.nats.url, hosts.nats.url)}[system]
    res = {"system": system, "rate": rate, "events": total, "load1": loadavg()}
    ready, warm, out_s, out_p = ctx.Queue(), ctx.Event(), ctx.Queue(), ctx.Queue()
    sub = ctx.Process(target=subscriber, args=(system, str(addr[1]), ready, warm, out_s))
    sub.start()
    procs = [sub]
    try:
        ready.get(timeout=30)
        before = hosts.cpu()
        h0 = {n: health(p, n) for p, n in ((hosts.a.path, "host-a"), (hosts.b.path, "host-b"))} \
            if system == "bridge" else None
        pub = ctx.Process(target=publisher, args=(system, str(addr[0]), rate, total, warm, out_p))
        pub.start()
        procs.append(pub)
        p = out_p.get(timeout=total / rate + 120)
        if "error" in p:
            res.update(status="failed", why=p["error"])
            return res
        s = out_s.get(timeout=60)
        after = hosts.cpu()
        n = s["n"]
        span = (s["last"] - p["t0"]) if s["last"] else None
        res.update(
            status="ok", delivered=n, lost=total - n, holes=s["holes"],
            sent_rate=total / (p["t_sent"] - p["t0"]) if p["t_sent"] > p["t0"] else None,
            delivered_rate=n / span if span else None,
            p50_us=s["p50"] * 1e6 if s["p50"] is not None else None,
            p99_us=s["p99"] * 1e6 if s["p99"] is not None else None,
            max_us=s["max"] * 1e6 if s["max"] is not None else None,
            pub_us=p["cpu"] / total * 1e6, sub_us=s["cpu"] / max(n, 1) * 1e6,
        )
        for part in ("bridge_a", "bridge_b", "broker_a", "broker_b", "nats_server"):
            res[f"{part}_us"] = after[part].since(before[part]) / max(n, 1) * 1e6
        if h0 is not None:
            h1 = {n_: health(p_, n_) for p_, n_ in ((hosts.a.path, "host-a"), (hosts.b.path, "host-b"))}
            res["dropped_export"] = h1["host-a"]["dropped_export"] - h0["host-a"]["dropped_export"]
            res["dropped_import"] = h1["host-b"]["dropped_import"] - h0["host-b"]["dropped_import"]
            res["exported"] = h1["host-a"]["exported"] - h0["host-a"]["exported"]
            res["imported"] = h1["host-b"]["imported"] - h0["host-b"]["imported"]
    except Exception as error:  # a stuck or failed trial: that row fails, the run goes on
        res.update(status="failed", why=f"{type(error).__name__}: {error}")
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    return res


# ---------------------------------------------------------------- reporting


def fmt(v, digits: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{v:,.0f}"


def us(v) -> str:
    if v is None:
        return "—"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def keeps_up(r: dict) -> bool:
    """A throughput trial the path kept up with: nothing lost, and both the
    publisher and the deliveries within SHORT of the asked rate (a backlog
    that the queues hid until the end shows as a lower delivered rate)."""
    return (r["status"] == "ok" and r["lost"] == 0 and (r["sent_rate"] or 0) >= SHORT * r["rate"]
            and (r["delivered_rate"] or 0) >= SHORT * r["rate"])


def summarize(results: list, systems: list) -> dict:
    summary = {}
    for system in systems:
        lat = [r for r in results if r["phase"] == "latency" and r["system"] == system and r["status"] == "ok"]
        thr = [r for r in results if r["phase"] == "throughput" and r["system"] == system and r["status"] == "ok"]
        clean = [r for r in thr if keeps_up(r)]
        best = max(clean, key=lambda r: r["delivered_rate"] or 0, default=None)
        row = {"p50_us": statistics.median([r["p50_us"] for r in lat]) if lat else None,
               "p99_us": statistics.median([r["p99_us"] for r in lat]) if lat else None,
               "max_rate": best["delivered_rate"] if best else None, "max_rate_asked": best["rate"] if best else None}
        for part in ("bridge_a", "bridge_b", "broker_a", "broker_b", "nats_server", "pub", "sub"):
            row[f"{part}_us_1k"] = statistics.median([r[f"{part}_us"] for r in lat]) if lat else None
            row[f"{part}_us_max"] = best[f"{part}_us"] if best else None
        summary[system] = row
    return summary


def markdown(results: list, summary: dict, args) -> str:
    out = []
    b, n = summary.get("bridge"), summary.get("nats")
    if b and n:
        def ratio(x, y, add=False):
            if x is None or y is None:
                return "—"
            return f"+{x - y:,.0f} µs" if add else f"{x / y:.2f}×"

        out += ["| | bridged A → NATS → B | nats-py direct | bridged / direct |", "|---|---:|---:|---:|",
                f"| highest rate with zero loss, ev/s | {fmt(b['max_rate'])} | {fmt(n['max_rate'])} "
                f"| {ratio(b['max_rate'], n['max_rate'])} |",
                f"| p50 latency at {args.rate:g} ev/s, µs | {fmt(b['p50_us'])} | {fmt(n['p50_us'])} "
                f"| {ratio(b['p50_us'], n['p50_us'], True)} |",
                f"| p99 latency at {args.rate:g} ev/s, µs | {fmt(b['p99_us'])} | {fmt(n['p99_us'])} "
                f"| {ratio(b['p99_us'], n['p99_us'], True)} |",
                f"| bridge A (export) CPU µs/event at {args.rate:g} ev/s / at the highest rate "
                f"| {us(b['bridge_a_us_1k'])} / {us(b['bridge_a_us_max'])} | — | |",
                f"| bridge B (import) CPU µs/event at {args.rate:g} ev/s / at the highest rate "
                f"| {us(b['bridge_b_us_1k'])} / {us(b['bridge_b_us_max'])} | — | |",
                f"| nats-server CPU µs/event at {args.rate:g} ev/s / at the highest rate "
                f"| {us(b['nats_server_us_1k'])} / {us(b['nats_server_us_max'])} "
                f"| {us(n['nats_server_us_1k'])} / {us(n['nats_server_us_max'])} | |",
                f"| brokers A + B CPU µs/event at the highest rate "
                f"| {us(b['broker_a_us_max'])} + {us(b['broker_b_us_max'])} | — | |", ""]
    loc = summary.get("local")
    if loc and loc["p50_us"] is not None:
        out += [f"decnet bus alone on host A (publisher and subscriber on broker A, no bridge), {args.rate:g} ev/s: "
                f"p50 {fmt(loc['p50_us'])} µs, p99 {fmt(loc['p99_us'])} µs.", ""]
    out += ["| phase | system | asked ev/s | sent ev/s | delivered ev/s | lost | p50 µs | p99 µs | bridge A µs/ev "
            "| bridge B µs/ev | nats-server µs/ev | brokers A+B µs/ev | drops export/import | load 1 min |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        if r["status"] != "ok":
            out.append(f"| {r['phase']} | {r['system']} | {fmt(r['rate'])} | {r['status']}: {r.get('why')} "
                       f"| | | | | | | | | | {r['load1']} |")
            continue
        bridged = r["system"] == "bridge"
        brokers = (r["broker_a_us"] + r["broker_b_us"]) if bridged else (r["broker_a_us"] if r["system"] == "local" else None)
        drops = f"{r.get('dropped_export', 0)}/{r.get('dropped_import', 0)}" if bridged else "—"
        out.append(f"| {r['phase']} | {r['system']} | {fmt(r['rate'])} | {fmt(r['sent_rate'])} | {fmt(r['delivered_rate'])} "
                   f"| {fmt(r['lost'])} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} "
                   f"| {us(r['bridge_a_us']) if bridged else '—'} | {us(r['bridge_b_us']) if bridged else '—'} "
                   f"| {us(r['nats_server_us']) if r['system'] != 'local' else '—'} | {us(brokers)} | {drops} "
                   f"| {r['load1']} |")
    out.append("")
    out.append(f"Latency: {args.rate:g} ev/s for {args.latency_seconds:g} s, median of {args.rounds} round(s). "
               "Throughput: a system leaves the ladder at its first loss, or when it sends or delivers under "
               f"{SHORT:.0%} of the asked rate. µs/ev: the process's CPU time over the trial / events delivered.")
    return "\n".join(out) + "\n"


def machine() -> dict:
    from decnet.bus.testing.federation import nats_server_path

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    info = {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "platform": platform.platform()}
    try:
        from importlib.metadata import version

        info["nats-py"] = version("nats-py")
    except Exception:
        pass
    binary = nats_server_path()
    if binary:
        info["nats-server"] = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    import decnet.bus

    info["decnet_compiled"] = bool(decnet.bus.ACCELERATED)
    return info


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bridge.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="bridge,nats",
                   help="comma list, in the order trials interleave: bridge (decnet bus on host A -> bridge -> "
                        "NATS -> bridge -> decnet bus on host B), nats (nats-py directly on the same nats-server), "
                        "local (decnet bus on host A alone) (default: bridge,nats)")
    p.add_argument("--rate", type=float, default=1000.0, help="events/s of the latency phase (default: 1000)")
    p.add_argument("--latency-seconds", type=float, default=None,
                   help="length of each latency trial in seconds (default: 5; --quick: 2)")
    p.add_argument("--rounds", type=int, default=None,
                   help="latency trials per system, interleaved; the table shows the median (default: 3; --quick: 1)")
    p.add_argument("--rates", default=None,
                   help="comma list of events/s the throughput ladder steps through, ascending (default: "
                        "2000,5000,10000,15000,20000,30000,40000,60000,80000,120000,160000,240000; "
                        "--quick: 2000,10000,40000)")
    p.add_argument("--seconds", type=float, default=None,
                   help="length of each throughput trial in seconds (default: 4; --quick: 1)")
    p.add_argument("--no-throughput", action="store_true", help="run the latency phase only")
    p.add_argument("--json", metavar="FILE", help="also write the machine, every trial and the summary as JSON")
    p.add_argument("--out", metavar="FILE.md", help="also write the markdown report to FILE.md")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (about a minute): the --quick defaults above, each unless given explicitly")
    args = p.parse_args(argv)
    q = args.quick
    args.latency_seconds = args.latency_seconds or (2.0 if q else 5.0)
    args.rounds = args.rounds or (1 if q else 3)
    args.seconds = args.seconds or (1.0 if q else 4.0)
    rates = args.rates or ("2000,10000,40000" if q else
                           "2000,5000,10000,15000,20000,30000,40000,60000,80000,120000,160000,240000")
    try:
        args.rate_list = [float(x) for x in rates.split(",") if x.strip()]
    except ValueError:
        p.error(f"--rates {rates!r}: not a comma list of numbers")
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.system_list if s not in SYSTEMS]
    if unknown or not args.system_list:
        p.error(f"--systems: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(SYSTEMS)}")
    if args.rate <= 0 or args.rounds < 1 or args.seconds <= 0 or args.latency_seconds <= 0 \
            or any(r <= 0 for r in args.rate_list):
        p.error("rates, rounds and durations must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from decnet.bus.testing.federation import nats_server_path

    if nats_server_path() is None:
        print("error: nats-server is not installed (Debian: apt-get install nats-server)", file=sys.stderr)
        return 1
    try:
        import nats  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as error:
        print(f"error: {error.name} is not installed: pip install -e '.[bench,bridge]'", file=sys.stderr)
        return 1
    info = machine()
    command = " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    header = (f"- machine: {info['nproc']} CPU(s), {info['cpu']}; python {info['python']}; {info.get('nats-server')}; "
              f"nats-py {info.get('nats-py')}; decnet hot path compiled: {info['decnet_compiled']}\n"
              f"- command: {command}\n- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(header, flush=True)
    results: list = []
    tmp = tempfile.mkdtemp(prefix="dbench-")
    hosts = None
    t_start = time.monotonic()
    try:
        hosts = Hosts(tmp)
        for rnd in range(args.rounds):
            for system in args.system_list:
                r = trial(hosts, system, args.rate, int(args.rate * args.latency_seconds))
                r["phase"] = "latency"
                results.append(r)
                print(f"  latency round {rnd + 1} {system:<6} {_line(r)}", flush=True)
        # decnet alone goes far past the bridge (docs/BENCHMARKS.md): its ladder would only take time.
        racing = [] if args.no_throughput else [s for s in args.system_list if s != "local"]
        for rate in args.rate_list:
            for system in list(racing):
                r = trial(hosts, system, rate, max(int(rate * args.seconds), 1000))
                r["phase"] = "throughput"
                results.append(r)
                print(f"  throughput {rate:>9,.0f}/s {system:<6} {_line(r)}", flush=True)
                if not keeps_up(r):
                    racing.remove(system)
            if not racing:
                break
    except KeyboardInterrupt:
        print("interrupted: reporting what finished", flush=True)
    finally:
        if hosts is not None:
            hosts.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(results, args.system_list)
    table = markdown(results, summary, args)
    print(f"\n(total {time.monotonic() - t_start:.0f} s)\n\n{table}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(header + "\n" + table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "command": command, "args": {k: v for k, v in vars(args).items()},
                       "trials": results, "summary": summary}, f, indent=1, default=str)
    return 0 if results and all(r["status"] == "ok" for r in results) else 2


def _line(r: dict) -> str:
    if r["status"] != "ok":
        return f"FAILED: {r.get('why')}"
    text = (f"sent {fmt(r['sent_rate'])}/s delivered {fmt(r['delivered_rate'])}/s lost {r['lost']} "
            f"p50 {fmt(r['p50_us'])} µs p99 {fmt(r['p99_us'])} µs nats-server {us(r['nats_server_us'])} µs/ev")
    if r["system"] == "bridge":
        text += (f" bridge A {us(r['bridge_a_us'])} B {us(r['bridge_b_us'])} µs/ev"
                 f" drops {r.get('dropped_export')}/{r.get('dropped_import')}")
    return text + f" load {r['load1']}"


if __name__ == "__main__":
    sys.exit(main())
