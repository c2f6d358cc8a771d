"""A rough probe of ``decnet web``'s CPU per delivered frame (bench/sse.py is
the full benchmark): one broker, one ``decnet web``, CLIENTS raw SSE clients in
a separate process, a publisher at RATE events/s for SECONDS; prints the web
process's CPU µs per frame and its RSS per idle client.

    .venv/bin/python bench/sse_probe.py [--clients 100] [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from decnet.bus import UnixBus, events
from decnet.bus.testing import BrokerProcess
from decnet.web.testing import WebProcess, make_token

CLIENT = r'''
import asyncio, sys, uvloop
path, n, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
counts = [0] * n
resyncs = [0]
async def one(i):
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(("GET /api/v1/topologies/t1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % token).encode())
    while True:
        data = await reader.read(65536)
        if not data:
            return
        counts[i] += data.count(b"event: topology.version_bumped")
        resyncs[0] += data.count(b"event: stream.resync")
async def main():
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent says when to report
    print(sum(counts), min(counts), max(counts), resyncs[0], flush=True)
uvloop.run(main())
'''


async def publish(socket, rate: float, seconds: float) -> int:
    bus = UnixBus(socket, name="probe", publish_wait=5.0)
    await bus.connect()
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    while loop.time() - start < seconds:
        n += 1
        await events.version_bumped(bus, "t1", n)
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    await bus.flush()
    await bus.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with BrokerProcess() as broker, WebProcess(broker.path) as web:
        rss0 = web.rss()
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(web.path), str(args.clients), make_token()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)  # the clients connect (a probe, not a test)
        rss1 = web.rss()
        cpu0 = web.cpu()
        sent = asyncio.run(publish(broker.path, args.rate, args.seconds))
        cpu = web.cpu().since(cpu0)
        time.sleep(2.0)  # frames still in flight reach the clients before they count
        client.stdin.write("\n")
        client.stdin.flush()
        total, low, high, resyncs = map(int, client.stdout.readline().split())
        client.kill()
        print(f"clients={args.clients} rate={args.rate:g}/s seconds={args.seconds:g} events={sent} "
              f"frames={total} (per client {low}..{high}) loss={sent * args.clients - total} resyncs={resyncs}")
        print(f"web CPU {cpu:.3f} s = {cpu / max(total, 1) * 1e6:.1f} us/frame, "
              f"{cpu / args.seconds * 100:.1f} % of a core; RSS per idle client {(rss1 - rss0) / args.clients / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
