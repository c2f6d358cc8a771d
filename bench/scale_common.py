"""What bench/scale_payload.py and bench/scale_publishers.py share: one trial
with P numbered publisher processes and N subscriber processes on one system,
the interleaved rounds, medians, the machine header and the memcpy ceiling.

The processes, servers and messages are bench/fanout.py's (``System``,
``Worker``, ``collect``) and the clients bench/fanout_worker.py's, so every
system runs the same client code as in the fan-out benchmark.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import fanout
from fanout import ROOT, WORKER, Inbox, System, TrialError, Worker, collect, cpu_time, spawn, stop_many

SYSTEMS = ["decnet", "nats", "redis", "zmq"]
#: decnet with glibc's heap kept (every decnet process): a payload of tens of
#: KiB otherwise costs page faults each time glibc gives the top of the heap
#: back to the kernel and takes it again (docs/BENCHMARKS.md, payload size).
MALLOC_KEPT = "decnet+malloc"
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_MMAP_THRESHOLD_": str(64 << 20)}


def run_trial(system: System, pubs: int, subs: int, cfg: dict, phase_timeout: float = 300.0,
              keep: bool = False, numbered: bool = True) -> dict:
    """One trial: ``pubs`` publishers (ids 0..pubs-1) and ``subs`` subscribers,
    the throughput phase only. ``cfg`` is merged into the workers' config;
    ``per_pub(pid)`` in it, if any, gives a publisher's own overrides (e.g.
    its ``pub_rate``), ``sub_events`` the subscribers' ``events`` (which sizes
    their client queues: each publisher's own count is too small when
    several publish). ``numbered`` False (one publisher only) runs the
    fan-out benchmark's plain counter: no per-publisher counts, no clock read
    per event. Returns the raw messages and the derived totals."""
    res: dict = {"system": system.name, "pubs": pubs, "subs": subs, "status": "ok"}
    tmp = tempfile.mkdtemp(prefix=f"scale-{system.name}-")
    server = None
    workers: list[Worker] = []
    inbox = Inbox()
    cfg = dict(cfg)
    per_pub = cfg.pop("per_pub", None)
    sub_events = cfg.pop("sub_events", None)
    try:
        server, addr = system.start_server(tmp)
        base = {"addr": addr, "events": 1000, "rate": 1000.0, "latency_seconds": 0.0, "pub_rate": None,
                "phases": 1, "idle_timeout": 5.0, "loop": system.loop, **cfg}
        if numbered:
            base["pubs"] = pubs

        def start(role: str, i: int, extra: dict) -> Worker:
            wcfg = {**base, **extra}
            cmd = [sys.executable, WORKER, role, system.kind, json.dumps(wcfg)]
            name = f"{role}{i}"
            return Worker(name, spawn(cmd, system.env, os.path.join(tmp, f"{name}.log"), pipes=True), inbox)

        # Publishers first (ZeroMQ's bind and send warm-ups), all started before any is waited for.
        publishers = [start("pub", i, {**({"pid": i} if numbered else {}), **(per_pub(i) if per_pub else {})})
                      for i in range(pubs)]
        workers.extend(publishers)
        collect(inbox, publishers, "ready", 30 + 0.5 * pubs, what="publishers ready")
        subscribers = [start("sub", i, {"events": sub_events} if sub_events else {}) for i in range(subs)]
        workers.extend(subscribers)
        collect(inbox, subscribers, "ready", 30 + 1.0 * subs, what="subscribers ready")

        srv_cpu0 = cpu_time(server.pid) if server else None
        for w in workers:
            w.send("go 1")
        sent = collect(inbox, publishers, "sent", phase_timeout, ph=1, what="publishers")
        done = collect(inbox, subscribers, "done", phase_timeout, ph=1, what="subscribers")
        for p in publishers:
            p.send("stop 1")
        results = collect(inbox, publishers, "result", 30, ph=1, what="publisher results")
        srv_cpu = cpu_time(server.pid).since(srv_cpu0) if server else None

        s = [sent[p] for p in publishers]
        d = [done[w] for w in subscribers]
        n_sent = [m["n"] for m in s]
        delivered = sum(m["n"] for m in d)
        t0 = min(m["t0"] for m in s)
        lasts = [m["last"] for m in d if m["last"] is not None]
        span = (max(lasts) - t0) if lasts else None
        res.update(
            sent=n_sent,
            t_sent_min=min(m["t_sent"] for m in s),
            firsts=[m["first"] for m in d],
            pub_dropped=[results[p].get("dropped") for p in publishers],
            publish_s=[m["t_sent"] - m["t0"] for m in s],
            delivered=delivered,
            expected=subs * sum(n_sent),
            lost=subs * sum(n_sent) - delivered,
            gaps=sum(m["gaps"] for m in d),
            holes=sum(m["holes"] for m in d),
            sub_timeouts=sum(1 for m in d if m["timeout"]),
            span_s=span,
            rate=delivered / span if span else None,
            pub_us=statistics.mean([results[p]["cpu"] / max(1, n) * 1e6 for p, n in zip(publishers, n_sent)]),
            sub_us=statistics.mean([m["cpu"] / m["n"] * 1e6 for m in d if m["n"]]) if delivered else None,
            srv_us=srv_cpu / delivered * 1e6 if (srv_cpu is not None and delivered) else None,
            srv_cpu_s=srv_cpu,
            per=[m.get("per") for m in d],  # [subscriber][publisher] events received
            slices=[m.get("slices") for m in d],  # [subscriber][publisher][slice]
            slice=d[0].get("slice") if d else None,
            lat_per=[m.get("lat_per") for m in d],  # [subscriber][publisher] {p50, p99, n}
        )
        for w in workers:
            w.send("quit")
    except TrialError as e:
        res["status"], res["why"] = e.status, e.why
    except Exception as e:  # that row fails, the run goes on
        res["status"], res["why"] = "failed", f"{type(e).__name__}: {e}"
    finally:
        stop_many([w.proc for w in workers], exit_wait=2.0, grace=3.0)
        if server is not None:
            stop_many([server], grace=5.0)
        if keep:
            res["tmp"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def systems_to_run(names: list[str], decnet_args: str = "") -> list[System]:
    """The Systems of ``names`` that can run here; a note for each skipped.
    ``decnet_args``: extra ``decnet bus`` options for the decnet brokers."""
    out = []
    for name in names:
        s = System("decnet" if name == MALLOC_KEPT else name, tuple(decnet_args.split()))
        if name == MALLOC_KEPT:
            s.name = name
            s.env.update(MALLOC_ENV)
        why = s.missing()
        if why:
            print(f"NOTE: skipping {name}: {why}", flush=True)
            continue
        if s.kind == "decnet" and not s.broker_hot_path():
            sys.exit(f"error: the decnet broker runs the pure hot path; build it in place first: "
                     f"cd {ROOT} && {sys.executable} setup.py build_ext --inplace")
        out.append(s)
    return out


def median(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals: list, spec: str = ",.0f") -> str:
    """``min–max`` of the rounds, for the tables."""
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return ""
    return f"{min(vals):{spec}}–{max(vals):{spec}}"


def uptime() -> str:
    try:
        with open("/proc/loadavg") as f:
            return "load average " + " ".join(f.read().split()[:3])
    except OSError:
        return "load average ?"


def header(title: str) -> list[str]:
    info = fanout.machine_info()
    return [
        f"# {title}",
        "",
        f"- machine: {info['nproc']} CPU(s), {info['cpu']}; python {info['python']}",
        "- peers: " + ", ".join(f"{k} {info[k]}" for k in ("nats-server", "nats-py", "redis-server", "redis", "pyzmq")
                                if k in info),
        f"- command: {' '.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])}",
        f"- before: {uptime()}",
    ]


def memcpy_bandwidth(sizes: list[int], seconds: float = 0.2) -> dict:
    """Bytes/s of one memcpy, on this machine now: for each size in ``sizes``
    the same buffer copied over and over (cache-hot, the cost of one payload
    copy; for small sizes mostly the ctypes call), and ``"large"``: a 256 MiB
    buffer copied whole (DRAM to DRAM, the bandwidth a stream of copies gets
    once it no longer fits in the caches)."""
    out: dict = {}
    for size in sizes:
        src = ctypes.create_string_buffer(b"x" * size, size)
        dst = ctypes.create_string_buffer(size)
        n = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        batch = max(1, (1 << 20) // size)
        while time.perf_counter() < end:
            for _ in range(batch):
                ctypes.memmove(dst, src, size)
            n += batch
        out[size] = n * size / (time.perf_counter() - t0)
    big = 256 << 20
    src = ctypes.create_string_buffer(big)
    dst = ctypes.create_string_buffer(big)
    ctypes.memmove(dst, src, big)  # touch every page first
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        ctypes.memmove(dst, src, big)
        best = max(best, big / (time.perf_counter() - t0))
    out["large"] = best
    return out


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)
    print(f"wrote {path}")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except Exception:
        return "?"


# -- command-line arguments: a user's mistake is one line from argparse (exit 2), not a traceback


def int_list(minimum: int, empty: bool = False):
    """An argparse type: a comma list of whole numbers, each at least
    ``minimum`` (``empty``: or nothing at all); the text itself is kept (the
    scripts split it)."""

    def check(text: str) -> str:
        try:
            values = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of whole numbers") from None
        if empty and not values:
            return text
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: each number must be at least {minimum}")
        return text

    return check


def positive_int(text: str) -> int:
    """An argparse type: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least 1")
    return value


def choices(*allowed: str):
    """An argparse type: a comma list of names out of ``allowed``."""

    def check(text: str) -> str:
        bad = [x for x in text.split(",") if x and x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(bad)}; choose from {', '.join(allowed)}")
        return text

    return check


def json_file(path: str) -> str:
    """An argparse type: a readable JSON file (a --json output to redraw)."""
    try:
        with open(path) as f:
            json.load(f)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{path}: {error.strerror}") from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{path}: not a JSON file") from None
    return path
