#!/usr/bin/env python3
"""Fan-out benchmark: decnet-bus against NATS, Redis pub/sub and ZeroMQ.

The same workload on every system: 1 publisher process -> N subscriber
processes, each subscribed to the wildcard ``decky.*.state``; the publisher
publishes on ``decky.d<k>.state`` (k = 0..99, round-robin) an orjson dict of
~200 bytes carrying a sequence number.

Phase 1 (throughput): ``--events`` events as fast as the publisher's client
allows, then end markers. Reported: delivered events/s summed over all
subscribers (events received by all subscribers / (last delivery anywhere -
first publish), CLOCK_MONOTONIC across processes), events lost (N*events -
delivered), CPU per message of the publisher (per publish), of a subscriber
(per event it received, averaged over subscribers) and of the server (per
delivery = one event to one subscriber).

Phase 2 (latency, only N in ``--latency-subs``): ``--rate`` events/s for
``--latency-seconds`` with the send time in the payload; p50/p99 one-way
latency over all subscribers' samples.

Systems run interleaved (A B C D A B C D ...), ``--rounds`` times; the table
shows the median over rounds. Run ``bash bench/peers.sh`` first to install the
peers; without them only decnet runs. Needs no pytest:

    .venv/bin/python bench/fanout.py --quick
    .venv/bin/python bench/fanout.py --subs 1,10,50 --events 100000 --rounds 3 \\
        --out /tmp/fanout.md --png /tmp/fanout.png --json /tmp/fanout.json
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from decnet.bus.testing import BrokerProcess, Raw, StartError, cpu_time, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "fanout_worker.py")
ALL_SYSTEMS = ["decnet", "decnet-pure", "decnet-asyncio", "nats", "redis", "zmq"]
#: Runs only with --baseline: decnet (compiled, uvloop) from another checkout.
BASELINE = "decnet-base"

# ------------------------------------------------------------------ processes

_live: list[subprocess.Popen] = []  # every process started and not yet reaped


def _pdeathsig() -> None:
    """In the child: get SIGTERM if the harness dies, so nothing is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(cmd: list[str], env: dict | None, log_path: str, pipes: bool) -> subprocess.Popen:
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipes else log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches the harness only; it tears everything down
        preexec_fn=_pdeathsig,
        text=pipes,
        bufsize=1 if pipes else -1,
    )
    log.close()
    proc.log_path = log_path  # type: ignore[attr-defined]
    _live.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """terminate, wait, kill; always reaps."""
    try:
        stop_process(proc, timeout=grace)
    except Exception:
        pass
    for f in (proc.stdin, proc.stdout):
        try:
            if f:
                f.close()
        except Exception:
            pass
    if proc in _live:
        _live.remove(proc)


def stop_many(procs: list[subprocess.Popen], exit_wait: float = 0.0, grace: float = 3.0) -> None:
    """Let them exit on their own for up to exit_wait s, then terminate all, wait up to grace s, kill."""
    deadline = time.monotonic() + exit_wait
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
    for p in procs:
        if p.poll() is None:
            try:
                p.terminate()
            except Exception:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        stop(p, 0.1)


def stop_all() -> None:
    stop_many(list(_live))


def log_tail(proc: subprocess.Popen, n: int = 6) -> str:
    try:
        with open(proc.log_path, "rb") as f:  # type: ignore[attr-defined]
            lines = f.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-n:])
    except Exception:
        return ""


class Worker:
    """A client process: JSON lines out, command lines in."""

    def __init__(self, name: str, proc: subprocess.Popen, inbox: queue.Queue) -> None:
        self.name, self.proc = name, proc
        threading.Thread(target=self._read, args=(inbox,), daemon=True).start()

    def _read(self, inbox: queue.Queue) -> None:
        try:
            for line in self.proc.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    inbox.put((self, json.loads(line)))
                except ValueError:
                    inbox.put((self, {"ev": "noise", "line": line}))
        except Exception:
            pass
        inbox.put((self, {"ev": "exit"}))

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except Exception:
            pass


class TrialError(Exception):
    def __init__(self, status: str, why: str) -> None:
        super().__init__(f"{status}: {why}")
        self.status, self.why = status, why


class Inbox(queue.Queue):
    """Every worker's messages; those nobody waited for yet are kept for later."""

    def __init__(self) -> None:
        super().__init__()
        self.backlog: list = []


def collect(inbox: Inbox, workers: list[Worker], ev: str, timeout: float, ph: int | None = None,
            what: str = "") -> dict:
    """Wait until every worker in ``workers`` has sent event ``ev``; {worker: msg}.

    A message that is not the one awaited (another worker's, a later phase's)
    stays in the backlog for the next call."""
    got: dict = {}
    deadline = time.monotonic() + timeout
    wanted = set(workers)

    def take(w: Worker, msg: dict) -> bool:
        """Handle one message; False to keep it for later."""
        kind = msg.get("ev")
        if kind == "error":
            raise TrialError("failed", f"{what or ev}: {w.name}: {msg.get('what')}")
        if kind == "exit":
            if w in wanted and w not in got:
                raise TrialError("failed", f"{what or ev}: {w.name} exited with {w.proc.wait(2)} "
                                           f"({log_tail(w.proc) or 'no output'})")
            return False  # kept: it fails whoever waits for that worker later
        if kind in ("warn", "noise"):
            print(f"      [{w.name}] {msg.get('what') or msg.get('line')}", flush=True)
            return True
        if kind == "stats":
            w.stats = msg  # type: ignore[attr-defined]
            return True
        if kind == ev and (ph is None or msg.get("ph") == ph) and w in wanted and w not in got:
            got[w] = msg
            return True
        return False

    backlog, inbox.backlog = inbox.backlog, []
    for w, msg in backlog:
        if not take(w, msg):
            inbox.backlog.append((w, msg))
    while wanted - set(got):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = [w.name for w in workers if w not in got]
            raise TrialError("timeout", f"{what or ev}: no answer within {timeout:.0f}s from {', '.join(missing[:5])}")
        try:
            w, msg = inbox.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if not take(w, msg):
            inbox.backlog.append((w, msg))
    return got


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(proc: subprocess.Popen, family: int, addr, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise TrialError("failed", f"server exited with {proc.returncode}: {log_tail(proc)}")
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(addr)
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TrialError("timeout", f"server not accepting connections after {timeout:.0f}s: {log_tail(proc)}")
        time.sleep(0.05)


class System:
    """How to start one system's server and which client code its workers run."""

    def __init__(self, name: str, broker_args: tuple = (), root: str = ROOT) -> None:
        self.name = name
        self.broker_args = broker_args  # extra `decnet bus` options (--decnet-args)
        self.kind = {"decnet-pure": "decnet", "decnet-asyncio": "decnet", BASELINE: "decnet"}.get(name, name)
        # The checkout the decnet broker and clients import: ROOT, or --baseline's
        # (first on PYTHONPATH, and the broker's working directory for `-m decnet`).
        self.root = root
        self.loop = "asyncio" if name == "decnet-asyncio" else "uvloop"
        self.pure = name == "decnet-pure"
        self.env = dict(os.environ)
        self.env.pop("DECNET_BUS_NO_EXTENSIONS", None)
        if self.pure:
            self.env["DECNET_BUS_NO_EXTENSIONS"] = "1"
        if root != ROOT:
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, self.env.get("PYTHONPATH")]))

    def missing(self) -> str | None:
        """Why this system cannot run here, or None."""
        need_mod = {"decnet": "decnet.bus", "nats": "nats", "redis": "redis", "zmq": "zmq"}[self.kind]
        try:
            found = importlib.util.find_spec(need_mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            pip = {"nats": "nats-py", "zmq": "pyzmq"}.get(self.kind, self.kind)
            return f"Python client '{need_mod}' not installed ({sys.executable} -m pip install {pip}; or bash bench/peers.sh)"
        binary = {"nats": "nats-server", "redis": "redis-server"}.get(self.kind)
        if binary and not shutil.which(binary):
            return f"'{binary}' not found on PATH (apt-get install {binary}; or bash bench/peers.sh)"
        if self.kind == "decnet":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                return "uvloop not installed"
        return None

    def start_broker(self, tmp: str, *extra: str) -> BrokerProcess:
        """The decnet broker as the trials run it (from ROOT, its socket and log
        in ``tmp``), once it said READY=1; torn down with the rest on Ctrl-C."""
        broker = BrokerProcess(os.path.join(tmp, "bus.sock"), "--log-level", "warning", *self.broker_args, *extra,
                               loop=self.loop, env=self.env, pure=self.pure, workdir=tmp)
        try:
            broker.start(cwd=self.root, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_pdeathsig)
        except StartError as e:
            lines = str(e).strip().splitlines()
            raise TrialError("failed", " | ".join(lines[:1] + lines[1:][-6:])) from None
        _live.append(broker.proc)
        return broker

    def broker_hot_path(self) -> bool:
        """Whether the decnet broker, started as the trials start it, runs the
        compiled hot path. The clients report their own; the broker runs from
        ROOT, where a checkout without an in-place build imports the pure twin
        without a word, so it is asked: its heartbeat says ``accelerated``."""
        tmp = tempfile.mkdtemp(prefix=f"fanout-probe-{self.name}-")
        try:
            broker = self.start_broker(tmp, "--health-interval", "0.05")
            try:
                with Raw(broker.path, name="fanout-probe") as raw:  # times out after 10 s
                    return bool(raw.heartbeat()["accelerated"])
            finally:
                stop(broker.proc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def start_server(self, tmp: str) -> tuple[subprocess.Popen | None, str]:
        """Start the server; return (process or None, the address clients use)."""
        log = os.path.join(tmp, "server.log")
        if self.kind == "decnet":
            broker = self.start_broker(tmp)
            return broker.proc, str(broker.path)
        if self.kind == "nats":
            port = free_port()
            p = spawn([shutil.which("nats-server"), "-a", "127.0.0.1", "-p", str(port)], self.env, log, pipes=False)
            wait_connectable(p, socket.AF_INET, ("127.0.0.1", port))
            return p, f"nats://127.0.0.1:{port}"
        if self.kind == "redis":
            path = os.path.join(tmp, "redis.sock")
            cmd = [shutil.which("redis-server"), "--port", "0", "--unixsocket", path, "--save", "",
                   "--appendonly", "no", "--dir", tmp]
            p = spawn(cmd, self.env, log, pipes=False)
            wait_connectable(p, socket.AF_UNIX, path)
            return p, path
        if self.kind == "zmq":
            return None, f"ipc://{os.path.join(tmp, 'zmq.ipc')}"
        raise ValueError(self.name)


# ------------------------------------------------------------------ one trial


def run_trial(system: System, n_subs: int, args, latency: bool) -> dict:
    """One (system, N) run: both phases; a dict of metrics, or status failed/timeout."""
    res: dict = {"system": system.name, "subs": n_subs, "events": args.events, "status": "ok"}
    tmp = tempfile.mkdtemp(prefix=f"fanout-{system.name}-")
    server = None
    workers: list[Worker] = []
    inbox = Inbox()
    phases = 2 if latency else 1
    try:
        server, addr = system.start_server(tmp)
        cfg = {"addr": addr, "events": args.events, "rate": args.rate, "latency_seconds": args.latency_seconds,
               "pub_rate": args.pub_rate,
               "phases": phases, "idle_timeout": args.idle_timeout, "loop": system.loop}

        def start(role: str, i: int) -> Worker:
            cmd = [sys.executable, WORKER, role, system.kind, json.dumps(cfg)]
            name = f"{role}{i}" if role == "sub" else "pub"
            return Worker(name, spawn(cmd, system.env, os.path.join(tmp, f"{name}.log"), pipes=True), inbox)

        # The publisher first: the ZeroMQ one binds and sends warm-ups for the subscribers.
        pub = start("pub", 0)
        workers.append(pub)
        ready_pub = collect(inbox, [pub], "ready", 30, what="publisher ready")[pub]
        subs = [start("sub", i) for i in range(n_subs)]
        workers.extend(subs)
        ready = collect(inbox, subs, "ready", 30 + 1.0 * n_subs, what="subscribers ready")
        if system.kind == "decnet":
            accel = {bool(m.get("accelerated")) for m in [ready_pub, *ready.values()]}
            res["accelerated"] = accel.pop() if len(accel) == 1 else "mixed"
        res["client_loop"] = ready_pub.get("loop")

        # -- phase 1: throughput
        srv_cpu0 = cpu_time(server.pid) if server else None
        for w in workers:
            w.send("go 1")
        sent = collect(inbox, [pub], "sent", args.phase_timeout, ph=1, what="publisher (phase 1)")[pub]
        done = collect(inbox, subs, "done", args.phase_timeout, ph=1, what="subscribers (phase 1)")
        pub.send("stop 1")
        pres = collect(inbox, [pub], "result", 30, ph=1, what="publisher result")[pub]
        srv_cpu = cpu_time(server.pid).since(srv_cpu0) if server else None

        d = list(done.values())
        delivered = sum(m["n"] for m in d)
        lasts = [m["last"] for m in d if m["last"] is not None]
        span = (max(lasts) - sent["t0"]) if lasts else None
        res.update(
            delivered=delivered,
            lost=n_subs * args.events - delivered,
            gaps=sum(m["gaps"] for m in d),
            holes=sum(m["holes"] for m in d),
            reorders=sum(m["reorders"] for m in d),
            sub_timeouts=sum(1 for m in d if m["timeout"]),
            span_s=span,
            rate=(delivered / span) if span and span > 0 else None,
            publish_s=sent["t_sent"] - sent["t0"],
            pub_rate=args.events / (sent["t_sent"] - sent["t0"]) if sent["t_sent"] > sent["t0"] else None,
            pub_us=pres["cpu"] / args.events * 1e6,
            pub_loop_us=pres["cpu_loop"] / args.events * 1e6,
            pub_dropped=pres.get("dropped"),
            sub_us=statistics.mean([m["cpu"] / m["n"] * 1e6 for m in d if m["n"]]) if delivered else None,
            srv_us=(srv_cpu / delivered * 1e6) if (srv_cpu is not None and delivered) else None,
            srv_cpu_s=srv_cpu,
        )
        notes = []
        if res["sub_timeouts"]:
            notes.append(f"{res['sub_timeouts']} subscriber(s) ended phase 1 on idle timeout")
        if res["pub_dropped"]:
            notes.append(f"publisher client dropped {res['pub_dropped']}")
        if res["holes"] or res["reorders"]:
            notes.append(f"sequence holes {res['holes']}, reorders {res['reorders']}")
        if system.kind == "decnet" and res.get("accelerated") != (system.name != "decnet-pure"):
            notes.append(f"compiled hot path in clients: {res.get('accelerated')} (unexpected)")

        if notes:
            res["note"] = "; ".join(notes)

        # -- phase 2: latency at a fixed rate (a failure here keeps phase 1's numbers)
        if latency:
            try:
                for w in workers:
                    w.send("go 2")
                collect(inbox, [pub], "sent", args.latency_seconds + args.phase_timeout, ph=2,
                        what="publisher (phase 2)")
                done2 = collect(inbox, subs, "done", args.phase_timeout, ph=2, what="subscribers (phase 2)")
                pub.send("stop 2")
                collect(inbox, [pub], "result", 30, ph=2, what="publisher result (phase 2)")
            except TrialError as e:
                notes.append(f"latency phase {e.status}: {e.why}")
            else:
                samples = sorted(x for m in done2.values() for x in (m["lat"] or []))
                expected = n_subs * int(args.rate * args.latency_seconds)
                res["lat_samples"] = len(samples)
                res["lat_lost"] = expected - len(samples)
                if samples:
                    res["p50_us"] = pct(samples, 50)
                    res["p99_us"] = pct(samples, 99)
                    res["max_us"] = samples[-1]
                if res["lat_lost"]:
                    notes.append(f"latency phase lost {res['lat_lost']} of {expected}")
            if notes:
                res["note"] = "; ".join(notes)
        for w in workers:
            w.send("quit")
    except TrialError as e:
        res["status"], res["why"] = e.status, e.why
    except Exception as e:  # a bug or an unexpected answer: that row fails, the run goes on
        res["status"], res["why"] = "failed", f"{type(e).__name__}: {e}"
    finally:
        stop_many([w.proc for w in workers], exit_wait=2.0, grace=3.0)
        if server is not None:
            stop_many([server], grace=5.0)
        if args.keep:
            res["tmp"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def pct(sorted_samples: list[float], p: float) -> float:
    if not sorted_samples:
        return float("nan")
    k = (len(sorted_samples) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (k - lo)


# ------------------------------------------------------------------ reporting

METRICS = ["rate", "lost", "gaps", "pub_us", "sub_us", "srv_us", "p50_us", "p99_us", "pub_rate", "pub_dropped"]


def median_rows(results: list[dict], systems: list[str], subs: list[int]) -> list[dict]:
    rows = []
    for n in subs:
        for s in systems:
            runs = [r for r in results if r["system"] == s and r["subs"] == n]
            if not runs:
                continue
            ok = [r for r in runs if r["status"] == "ok"]
            row = {"system": s, "subs": n, "rounds": len(runs), "ok": len(ok)}
            for m in METRICS:
                vals = [r[m] for r in ok if r.get(m) is not None]
                row[m] = statistics.median(vals) if vals else None
            bad = [r for r in runs if r["status"] != "ok"]
            status = "ok" if not bad else ("/".join(sorted({r["status"] for r in bad})) + f" {len(bad)}/{len(runs)}")
            row["status"] = status
            row["why"] = "; ".join(sorted({r.get("why", "") for r in bad if r.get("why")}))
            notes = sorted({r["note"] for r in ok if r.get("note")})
            row["note"] = "; ".join(notes)
            rows.append(row)
    return rows


def fmt(v, kind: str = "f") -> str:
    if v is None:
        return "—"
    if kind == "rate":
        return f"{v:,.0f}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "us":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    return str(v)


def markdown(rows: list[dict], args) -> str:
    head = ("| system | subs | delivered ev/s, all subs | lost | gaps | pub µs/publish | sub µs/event | server µs/delivery "
            "| p50 µs | p99 µs | status |")
    out = [head, "|" + "---|" * 11]
    for r in rows:
        status = r["status"]
        out.append(
            f"| {r['system']} | {r['subs']} | {fmt(r['rate'], 'rate')} | {fmt(r['lost'], 'int')} | {fmt(r['gaps'], 'int')} "
            f"| {fmt(r['pub_us'], 'us')} | {fmt(r['sub_us'], 'us')} | {fmt(r['srv_us'], 'us')} "
            f"| {fmt(r['p50_us'], 'us')} | {fmt(r['p99_us'], 'us')} | {status} |"
        )
    notes = [f"- {r['system']} N={r['subs']}: {r['why'] or r['note']}" for r in rows if r["why"] or r["note"]]
    text = "\n".join(out)
    pace = f"paced at {args.pub_rate:,.0f} ev/s" if args.pub_rate else "at full speed"
    text += (f"\n\nMedian of {args.rounds} round(s); {args.events:,} events per publisher ({pace}); ~200-byte orjson payload; "
             "delivered ev/s is the total over all subscribers (events they all received / (last delivery - first publish)); "
             f"latency at {args.rate:g} ev/s for {args.latency_seconds:g} s (N in {args.latency_subs}). "
             "zmq has no server: the publisher process does the fan-out (its µs include it).")
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text + "\n"


def machine_info() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "executable": sys.executable}
    try:
        import decnet.bus as db

        info["decnet_accelerated"] = bool(db.ACCELERATED)
    except Exception:
        pass
    for mod, dist in (("nats", "nats-py"), ("redis", "redis"), ("zmq", "pyzmq"), ("uvloop", "uvloop")):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:
            pass
    for b in ("nats-server", "redis-server"):
        exe = shutil.which(b)
        if exe:
            try:
                info[b] = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
            except Exception:
                pass
    return info


def chart(rows: list[dict], path: str) -> str | None:
    from fanout_chart import chart as draw  # beside this file; also usable on saved --json runs

    return draw(rows, path)


# ------------------------------------------------------------------ main


def int_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="fanout.py",
        description="Fan-out benchmark: 1 publisher -> N subscribers on the wildcard decky.*.state, the same "
                    "workload against decnet-bus and its peers (NATS, Redis pub/sub, ZeroMQ). Prints a markdown "
                    "table of medians over rounds. Install the peers with: bash bench/peers.sh",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="systems: decnet (broker and clients on uvloop, compiled hot path), decnet-pure (same with "
               "DECNET_BUS_NO_EXTENSIONS=1), decnet-asyncio (broker --loop asyncio, clients on plain asyncio), "
               "nats (nats-server + nats-py), redis (redis-server on a UNIX socket + redis-py asyncio), "
               "zmq (pyzmq PUB/SUB over ipc://, no broker). Systems not installed are skipped with a note.",
    )
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                   help=f"comma list of systems to run, in this order within a round (default: all: {','.join(ALL_SYSTEMS)})")
    p.add_argument("--subs", default=None, help="comma list of subscriber counts N (default: 1,10,50)")
    p.add_argument("--events", type=int, default=None,
                   help="events the publisher sends in the throughput phase (default: 100000)")
    p.add_argument("--rounds", type=int, default=None,
                   help="repetitions of the whole matrix; systems interleave within a round; "
                        "the table reports medians (default: 3)")
    p.add_argument("--pub-rate", type=float, default=None, metavar="EV_PER_S",
                   help="pace the throughput phase's publisher at this many events/s instead of full speed: "
                        "finds the highest rate a system sustains without loss (default: full speed)")
    p.add_argument("--rate", type=float, default=1000.0,
                   help="events/s the publisher sends in the latency phase (default: 1000)")
    p.add_argument("--latency-seconds", type=float, default=3.0,
                   help="duration of the latency phase in seconds (default: 3)")
    p.add_argument("--latency-subs", default="1,10",
                   help="subscriber counts that also run the latency phase (default: 1,10)")
    p.add_argument("--idle-timeout", type=float, default=5.0,
                   help="a subscriber ends a phase after this many seconds without an event (default: 5)")
    p.add_argument("--phase-timeout", type=float, default=600.0,
                   help="upper bound in seconds for one phase of one trial; past it the row is 'timeout' (default: 600)")
    p.add_argument("--decnet-args", default="", metavar="ARGS",
                   help="extra options for the decnet broker, e.g. '--max-stall-ms 0' (default: none)")
    p.add_argument("--baseline", metavar="CHECKOUT",
                   help=f"also run system {BASELINE}: decnet (compiled, uvloop) from another checkout built in place "
                        "(e.g. a git worktree of the previous commit after `python setup.py build_ext --inplace`), "
                        "interleaved with the others in each round: an A/B in one run")
    p.add_argument("--keep", action="store_true", help="keep each trial's temp dir (process logs) for debugging")
    p.add_argument("--out", metavar="FILE.md", help="also write the markdown report (machine info + table) to FILE.md")
    p.add_argument("--png", metavar="FILE.png", help="write a chart: events/s against N, one line per system (needs matplotlib)")
    p.add_argument("--json", metavar="FILE", help="write machine info, every round's raw results and the medians as JSON")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: --events 20000 --rounds 1 --subs 1,10 (each unless given explicitly)")
    args = p.parse_args(argv)
    quick = args.quick
    if args.events is None:
        args.events = 20000 if quick else 100000
    if args.rounds is None:
        args.rounds = 1 if quick else 3
    if args.subs is None:
        args.subs = "1,10" if quick else "1,10,50"
    args.subs_list = int_list(args.subs)
    args.latency_list = int_list(args.latency_subs)
    args.systems_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.baseline:
        if not os.path.isdir(os.path.join(args.baseline, "decnet", "bus")):
            p.error(f"--baseline {args.baseline}: not a decnet-bus checkout (no decnet/bus in it)")
        args.baseline = os.path.abspath(args.baseline)
        if BASELINE not in args.systems_list:
            args.systems_list.insert(0, BASELINE)
    elif BASELINE in args.systems_list:
        p.error(f"system {BASELINE} needs --baseline CHECKOUT")
    unknown = [s for s in args.systems_list if s not in ALL_SYSTEMS + [BASELINE]]
    if unknown:
        p.error(f"unknown system(s): {', '.join(unknown)}; choose from {', '.join(ALL_SYSTEMS)}")
    if args.events < 1 or args.rounds < 1 or not args.subs_list:
        p.error("--events and --rounds must be >= 1 and --subs not empty")
    return args


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    info = machine_info()
    header = [
        "# decnet-bus fan-out benchmark",
        "",
        f"- machine: {info['nproc']} CPU(s), {info['cpu']}",
        f"- python {info['python']} ({info['executable']}), {info['platform']}",
        "- peers: " + ", ".join(f"{k} {info[k]}" for k in ("nats-server", "nats-py", "redis-server", "redis", "pyzmq")
                                if k in info) if any(k in info for k in ("nats-server", "redis-server", "pyzmq")) else "- peers: none installed",
        f"- decnet hot path compiled: {info.get('decnet_accelerated')}",
        f"- command: {' '.join([os.path.relpath(sys.argv[0], ROOT) if sys.argv[0] else 'fanout.py', *sys.argv[1:]])}",
        "",
    ]
    print("\n".join(header), flush=True)

    systems = []
    for name in args.systems_list:
        s = System(name, tuple(args.decnet_args.split()), args.baseline if name == BASELINE else ROOT)
        why = s.missing()
        if why:
            print(f"NOTE: skipping {name}: {why}", flush=True)
            continue
        if s.kind == "decnet":
            compiled = s.broker_hot_path()
            print(f"- {name} broker hot path: {'compiled' if compiled else 'pure Python'}", flush=True)
            if compiled != (name != "decnet-pure"):
                print(f"error: the {name} broker (python -m decnet, run from {s.root}) runs the "
                      f"{'compiled' if compiled else 'pure'} hot path; build it in place first: "
                      f"cd {s.root} && {sys.executable} setup.py build_ext --inplace", file=sys.stderr)
                return 2
        systems.append(s)
    if not systems:
        print("nothing to run", file=sys.stderr)
        return 1

    results: list[dict] = []
    t_start = time.monotonic()
    try:
        for rnd in range(1, args.rounds + 1):
            for n in args.subs_list:
                for s in systems:
                    lat = n in args.latency_list
                    t = time.monotonic()
                    r = run_trial(s, n, args, lat)
                    r["round"] = rnd
                    results.append(r)
                    extra = ""
                    if r["status"] == "ok":
                        extra = (f"{fmt(r.get('rate'), 'rate')} ev/s lost={r.get('lost')} gaps={r.get('gaps')} "
                                 f"pub={fmt(r.get('pub_us'), 'us')}µs sub={fmt(r.get('sub_us'), 'us')}µs "
                                 f"srv={fmt(r.get('srv_us'), 'us')}µs")
                        if lat:
                            extra += f" p50={fmt(r.get('p50_us'), 'us')}µs p99={fmt(r.get('p99_us'), 'us')}µs"
                        if r.get("note"):
                            extra += f" ({r['note']})"
                    else:
                        extra = f"{r['status'].upper()}: {r.get('why')}"
                    print(f"  round {rnd} N={n:<3} {s.name:<15} {time.monotonic() - t:5.1f}s  {extra}", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down and reporting what finished", flush=True)
    finally:
        stop_all()

    rows = median_rows(results, [s.name for s in systems], args.subs_list)
    table = markdown(rows, args)
    print(f"\n(total {time.monotonic() - t_start:.0f}s)\n")
    print(table, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(header) + "\n" + table)
        print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": {k: v for k, v in vars(args).items()}, "results": results,
                       "medians": rows}, f, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.png:
        why = chart(rows, args.png)
        print(why or f"wrote {args.png}")
    return 0 if all(r["status"] == "ok" for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
