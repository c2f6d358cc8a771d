"""Broker capacity with clients that are not the bottleneck.

Publisher processes write pre-encoded PUB frames on raw sockets as fast as the
kernel takes them; subscriber processes read raw and count bytes (every EVT has
the same size). Reports deliveries/s the broker sustains and its CPU per
delivered event.

    python bench/capacity.py [--subs 1,10,50] [--pubs 2] [--seconds 5] [--pure] [--loop uvloop] [--unbatched]

``--unbatched`` runs the real broker with ``decnet bus --unbatched``
(``BrokerConfig.batch_writes=False``): each delivery written on its own, as a
broker that does not batch would. Compared with the default, it shows what
batching buys.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

from decnet.bus.protocol import encode
from decnet.bus.testing import BrokerProcess, Raw

BODY = b'{"decky":"d00","state":"up","pad":"' + b"x" * 160 + b'"}'
PUB_SIZE = len(encode("PUB", "decky.d00.state", BODY))  # every topic has the same length


def subscriber(path, ready, drained, out) -> None:
    raw = Raw(path, name="bench")
    raw.send(encode("SUB", "decky.*.state"))
    raw.until_pong()
    ready.put(1)
    got = 0
    sock = raw.sock
    sock.settimeout(0.5)
    while True:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            if drained.is_set():  # the publishers are done and nothing came for 0.5 s
                break
            continue
        if not data:
            break
        got += len(data)
    out.put(got)


def publisher(path, go, stop, out) -> None:
    raw = Raw(path, name="bench")
    sendall = raw.sock.sendall
    batch = b"".join(encode("PUB", f"decky.d{i % 100:02d}.state", BODY) for i in range(300))
    go.wait()
    sent = 0
    while not stop.is_set():
        sendall(batch)
        sent += 300
    raw.until_pong()  # everything sent was routed
    out.put(sent)


def run(subs: int, pubs: int, seconds: float, pure: bool, loop: str, unbatched: bool = False) -> dict:
    ctx = mp.get_context("fork")
    options = ["--queue-limit", str(64 << 20), "--log-level", "warning", *(["--unbatched"] if unbatched else [])]
    with BrokerProcess(None, *options, loop=loop, pure=pure) as broker:
        ready, stop, go, drained = ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Event()
        out_s, out_p = ctx.Queue(), ctx.Queue()
        procs = [ctx.Process(target=subscriber, args=(broker.path, ready, drained, out_s)) for _ in range(subs)]
        procs += [ctx.Process(target=publisher, args=(broker.path, go, stop, out_p)) for _ in range(pubs)]
        for proc in procs:
            proc.start()
        for _ in range(subs):
            ready.get(timeout=30)
        cpu0, t0, (reads0, writes0) = broker.cpu(), time.monotonic(), broker.syscalls()
        go.set()
        time.sleep(seconds)
        stop.set()
        sent = sum(out_p.get(timeout=60) for _ in range(pubs))
        drained.set()
        received = sum(out_s.get(timeout=120) for _ in range(subs))
        # Until the last delivery was read, less the 0.5 s of silence that ended it.
        cpu, t1 = broker.cpu().since(cpu0), time.monotonic() - 0.5
        reads1, writes1 = broker.syscalls()
        for proc in procs:
            proc.join(10)
        delivered = received // PUB_SIZE  # an EVT frame is as long as its PUB
        return {
            "subs": subs,
            "published": sent,
            "delivered": delivered,
            "lost": max(sent * subs - delivered, 0),
            "deliveries_per_s": delivered / (t1 - t0),
            "broker_cpu_us_per_delivery": cpu / max(delivered, 1) * 1e6,
            "broker_cpu_share": cpu / (t1 - t0),
            # Batching, seen from the kernel: how many deliveries one write carries.
            # The kernel counts read/write/readv/writev (libuv's calls), not
            # recv/send (plain asyncio's): None when it saw none.
            "deliveries_per_write": delivered / (writes1 - writes0) if writes1 > writes0 else None,
            "publishes_per_read": sent / (reads1 - reads0) if reads1 > reads0 else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subs", default="1,10,50", help="subscriber counts to run (comma list)")
    parser.add_argument("--pubs", type=int, default=2, help="publisher processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--pure", action="store_true", help="broker with DECNET_BUS_NO_EXTENSIONS=1")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--unbatched", action="store_true",
                        help="the same broker writing each delivery on its own (decnet bus --unbatched): "
                             "what batching buys")
    args = parser.parse_args()
    print(f"broker: loop={args.loop} hot path={'pure' if args.pure else 'compiled'}"
          f"{' UNBATCHED' if args.unbatched else ''}; {args.pubs} raw publishers; "
          f"{PUB_SIZE}-byte frames; {os.cpu_count()} CPUs")
    print("| subscribers | published | deliveries/s | lost | broker µs/delivery | broker CPU | deliveries per write | PUBs per read |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for subs in [int(n) for n in args.subs.split(",")]:
        r = run(subs, args.pubs, args.seconds, args.pure, args.loop, args.unbatched)
        print(f"| {subs} | {r['published']:,} | {r['deliveries_per_s']:,.0f} | {r['lost']:,} | "
              f"{r['broker_cpu_us_per_delivery']:.3f} | {r['broker_cpu_share']:.0%} | "
              f"{_count(r['deliveries_per_write'])} | {_count(r['publishes_per_read'])} |", flush=True)


def _count(value) -> str:
    return "—" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
