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

from brokerproc import Broker, hello, until_pong
from decnet.bus._pure import encode

BODY = b'{"decky":"d00","state":"up","pad":"' + b"x" * 160 + b'"}'


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def reader(path, ready, stop) -> None:
    sock = hello(path)
    sock.sendall(encode("SUB", "decky.*.state"))
    until_pong(sock)
    ready.put(1)
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
    with Broker(pure=args.pure) as broker:
        time.sleep(0.5)
        rows.append(("idle", broker.rss()))
        socks = []
        for c in range(args.connections):
            sock = hello(broker.path, name=f"idle-{c}")
            sock.sendall(b"".join(encode("SUB", f"decky.d{c}.k{k}.>") for k in range(args.patterns)))
            socks.append(sock)
        for sock in socks:
            until_pong(sock)
        rows.append((f"{args.connections:,} connections, {args.connections * args.patterns:,} subscriptions", broker.rss()))
        for sock in socks:
            sock.close()
        time.sleep(1)
        rows.append(("after they all left", broker.rss()))

        ctx = mp.get_context("fork")
        ready, stop = ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=reader, args=(broker.path, ready, stop)) for _ in range(args.fanout)]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=30)
        pub = hello(broker.path, name="publisher")
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
            pub.sendall(batch)
            sent += 300
        until_pong(pub)
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
