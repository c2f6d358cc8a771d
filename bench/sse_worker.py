"""The two kinds of child process of bench/sse.py: SSE clients and the publisher.

``clients``: N event streams of one topology on raw UNIX sockets (uvloop, one
``asyncio.Protocol`` each, no HTTP library), read with a minimal frame
scanner: every ``mutation_id`` in a chunk is the publisher's send time in ns,
so one regex pass and one clock read per chunk give each frame's latency.
Driven by bench/sse.py through stdin, one command a line, one JSON answer a
line on stdout:

    start           count and time frames from now on
    stop SECONDS    wait until every stream saw the end marker (at most SECONDS),
                    write the latencies (int64 ns) to --latencies, answer the counts
    freeze          open one more stream that never reads (a frozen client)
    quit

``publish``: one bus client publishing mutations at a fixed rate with the
helpers of decnet/bus/events.py (``events.mutation``, its ``mutation_id`` the
send time in ns), then ``events.status_changed`` as the end marker.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import socket
import sys
import time

import uvloop

MUTATION_ID = re.compile(rb'"mutation_id":"(\d+)"')
READY = b"event: stream.ready"
RESYNC = b"event: stream.resync"
MARKER = b"event: topology.status_changed"


class Stream(asyncio.Protocol):
    """One event stream, scanned chunk by chunk."""

    def __init__(self, clients: "Clients") -> None:
        self.clients = clients
        self.tail = b""
        self.frames = 0
        self.resyncs = 0
        self.ready = False
        self.done = False
        self.closed = False

    def connection_made(self, transport) -> None:
        transport.write(self.clients.request)

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.tail = data
            return
        self.tail = data[cut + 2:]
        clients = self.clients
        if clients.recording:
            ids = MUTATION_ID.findall(data, 0, cut)
            if ids:
                now = time.time_ns()
                self.frames += len(ids)
                clients.latencies.extend([now - int(i) for i in ids])
            if RESYNC in data:
                self.resyncs += data.count(RESYNC, 0, cut)
            if MARKER in data:
                self.done = True
                clients.check()
        elif not self.ready and READY in data:
            self.ready = True
            clients.check()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.clients.check()


class Clients:
    def __init__(self, args) -> None:
        self.args = args
        self.request = (f"GET /api/v1/topologies/{args.topology}/events HTTP/1.1\r\nHost: bench\r\n"
                        f"Accept: text/event-stream\r\nAuthorization: Bearer {args.token}\r\n\r\n").encode()
        self.streams: list[Stream] = []
        self.recording = False
        self.latencies = array.array("q")
        self.frozen: list[socket.socket] = []
        self.waiter: asyncio.Future | None = None

    def check(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        if self.recording:
            if all(s.done or s.closed for s in self.streams):
                self.waiter.set_result(None)
        elif all(s.ready or s.closed for s in self.streams):
            self.waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        self.check()
        try:
            await asyncio.wait_for(self.waiter, timeout)
        except TimeoutError:
            pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.args.clients):
            _, stream = await loop.create_unix_connection(lambda: Stream(self), self.args.uds)
            self.streams.append(stream)
        await self.wait(60.0)
        ready = sum(s.ready for s in self.streams)
        t = os.times()
        say({"ready": ready, "cpu": t.user + t.system})
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            if line[0] == "start":
                for s in self.streams:
                    s.frames = s.resyncs = 0
                    s.done = False
                del self.latencies[:]
                self.recording = True
                say({"started": True})
            elif line[0] == "stop":
                await self.wait(float(line[1]))
                self.recording = False
                with open(self.args.latencies, "wb") as f:
                    self.latencies.tofile(f)
                frames = [s.frames for s in self.streams]
                t = os.times()
                say({"frames": sum(frames), "min": min(frames), "max": max(frames),
                     "resyncs": sum(s.resyncs for s in self.streams), "closed": sum(s.closed for s in self.streams),
                     "undone": sum(not (s.done or s.closed) for s in self.streams), "cpu": t.user + t.system})
            elif line[0] == "freeze":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.args.uds)
                sock.sendall(self.request)
                self.frozen.append(sock)  # never read: its socket fills, then the server's send waits
                say({"frozen": len(self.frozen)})


def say(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


async def publish(args) -> None:
    from decnet.bus import UnixBus, events

    bus = UnixBus(args.bus, name="sse bench publisher", publish_wait=5.0)
    await bus.connect()
    loop = asyncio.get_running_loop()
    total = max(1, round(args.rate * args.seconds))
    states = ("enqueued", "applying", "applied")
    n = 0
    started = time.time()  # the parent measures the delivery from here
    start = loop.time()
    while n < total:
        due = min(total, int((loop.time() - start) * args.rate) + 1)
        while n < due:
            await events.mutation(bus, args.topology, str(time.time_ns()), states[n % 3], op="attach_decky")
            n += 1
        await asyncio.sleep(0.001)  # the next tick: events due meanwhile go out together
    elapsed = loop.time() - start
    await bus.flush()
    await events.status_changed(bus, args.topology, "active")
    await bus.flush()
    await bus.close()
    say({"sent": n, "elapsed": elapsed, "started": started})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("clients", help="N SSE streams driven through stdin")
    c.add_argument("--uds", required=True)
    c.add_argument("--clients", type=int, required=True)
    c.add_argument("--token", required=True)
    c.add_argument("--topology", default="t1")
    c.add_argument("--latencies", required=True, help="file the latencies go to (int64 ns)")
    p = sub.add_parser("publish", help="mutations at a fixed rate, then the end marker")
    p.add_argument("--bus", required=True)
    p.add_argument("--topology", default="t1")
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    if args.mode == "clients":
        uvloop.run(Clients(args).run())
    else:
        uvloop.run(publish(args))


if __name__ == "__main__":
    main()
