"""Broker memory: RSS idle, with 1,000 connections holding 10,000 subscriptions,
and during a 50-subscriber fan-out.

    python bench/memory.py [--connections 1000] [--patterns 10] [--fanout 50] [--pure]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import threading
import time

from decnet.bus.protocol import encode
from decnet.bus.testing import BrokerProcess, Raw

BODY = b'{"decky":"d00","state":"up","pad":"' + b"x" * 160 + b'"}'


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def reader(path, ready, stop) -> None:
    raw = Raw(path, name="bench")
    raw.send(encode("SUB", "decky.*.state"))
    raw.until_pong()
    ready.put(1)
    sock = raw.sock
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not sock.recv(1 << 20):
                break
        except TimeoutError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--patterns", type=int, default=10, help="subscriptions per connection")
    parser.add_argument("--fanout", type=int, default=50, help="subscribers in the fan-out phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the fan-out phase")
    parser.add_argument("--pure", action="store_true", help="broker with DECNET_BUS_NO_EXTENSIONS=1")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections + 256)), hard))
    rows = []
    with BrokerProcess(None, "--log-level", "warning", pure=args.pure) as broker:
        time.sleep(0.5)
        rows.append(("idle", broker.rss()))
        raws = []
        for c in range(args.connections):
            raw = Raw(broker.path, name=f"idle-{c}")
            raw.send(*(encode("SUB", f"decky.d{c}.k{k}.>") for k in range(args.patterns)))
            raws.append(raw)
        for raw in raws:
            raw.until_pong()
        rows.append((f"{args.connections:,} connections, {args.connections * args.patterns:,} subscriptions", broker.rss()))
        for raw in raws:
            raw.close()
        time.sleep(1)
        rows.append(("after they all left", broker.rss()))

        ctx = mp.get_context("fork")
        ready, stop = ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=reader, args=(broker.path, ready, stop)) for _ in range(args.fanout)]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=30)
        pub = Raw(broker.path, name="publisher")
        batch = b"".join(encode("PUB", f"decky.d{i % 100:02d}.state", BODY) for i in range(300))
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, broker.rss())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        deadline = time.monotonic() + args.seconds
        sent = 0
        while time.monotonic() < deadline:
            pub.send(batch)
            sent += 300
        pub.until_pong()
        done.set()
        sampler.join()
        stop.set()
        for proc in procs:
            proc.join(10)
        rows.append((f"peak during a {args.fanout}-subscriber fan-out ({sent:,} events published)", peak))
    print(f"broker RSS (hot path: {'pure' if args.pure else 'compiled'})")
    print("| state | RSS |")
    print("|---|---:|")
    for name, rss in rows:
        print(f"| {name} | {mib(rss)} |")


if __name__ == "__main__":
    main()
