#!/usr/bin/env python3
"""One process holding many connections to a broker, for the scale benchmarks
(bench/scale_subscriptions.py, bench/scale_idle.py).

    python bench/scale_worker.py SPEC.json

SPEC.json (a file: the patterns of 1,000 connections pass the kernel's
limit on one argument): ``{"system": "decnet" | "decnet-client" | "nats" | "redis",
"address": socket path or "host:port", "conns": [[pattern, ...], ...],
"hello": true}``: one connection per list, subscribed to its patterns (an
empty list: no subscription). ``hello`` false leaves a decnet connection at
HELLO only, before any SUB (the same as an empty list; kept for clarity).

- ``decnet``: raw sockets on uvloop, HELLO then SUB each pattern then PING;
  ready once the PONG is back, so the broker has every subscription.
- ``decnet-client``: one real ``UnixBus`` per connection (its keepalive PINGs
  included), one Subscription entered per pattern; ready once ``flush()``
  returns.
- ``nats``: raw TCP, ``CONNECT`` then ``SUB`` then ``PING``; ready at ``PONG``.
  The server's own PINGs are answered.
- ``redis``: raw RESP, ``PSUBSCRIBE`` (the patterns are globs) then ``PING``;
  ready at the pong.

After setup it prints ``{"ev": "ready", ...}`` on stdout and then answers its
stdin: ``counts`` prints ``{"ev": "counts", "n": [...]}``, the events each
connection received since ready (counted by a marker that starts every event
frame on a topic ``s.*``: ``EVT s.`` / ``MSG s.`` / ``pmessage``), and ``quit`` closes everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

# Every event topic of the benchmarks starts with "s.": the heartbeat, which a
# wildcard like ">" also matches, is not counted.
MARKERS = {"decnet": b"EVT s.", "nats": b"MSG s.", "redis": b"pmessage"}


def emit(**kw) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Conn(asyncio.Protocol):
    """A raw connection: ``setup`` bytes are sent, ``ready_at`` is awaited,
    then every event frame received is counted by its marker."""

    def __init__(self, system: str, setup: bytes, ready_at: bytes) -> None:
        self.system = system
        self.setup = setup
        self.ready_at = ready_at
        self.marker = MARKERS[system]
        self.ready = asyncio.get_running_loop().create_future()
        self.head = b""  # bytes before ready, searched for ready_at
        self.tail = b""  # the last len(marker)-1 bytes, so a split marker is counted once
        self.count = 0
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.setup)

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.head += data
            at = self.head.find(self.ready_at)
            if at < 0:
                return
            data = self.head[at + len(self.ready_at):]
            self.head = b""
            self.ready.set_result(None)
        if self.system == "nats" and b"PING\r\n" in data:
            self.transport.write(b"PONG\r\n")
        joined = self.tail + data
        self.count += joined.count(self.marker)
        self.tail = joined[-(len(self.marker) - 1):]

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))


def _setup(system: str, patterns: list[str], i: int) -> tuple[bytes, bytes]:
    if system == "decnet":
        from decnet.bus.protocol import encode

        hello = encode("HELLO", None, json.dumps({"v": 1, "name": f"scale-{os.getpid()}-{i}", "pid": os.getpid()}).encode())
        frames = [hello, *(encode("SUB", p) for p in patterns), encode("PING")]
        return b"".join(frames), b"PONG\n\x00\x00\x00\x00"
    if system == "nats":
        lines = ['CONNECT {"verbose":false,"pedantic":false,"name":"scale"}']
        lines += [f"SUB {p} {k + 1}" for k, p in enumerate(patterns)]
        lines.append("PING")
        return ("\r\n".join(lines) + "\r\n").encode(), b"PONG\r\n"
    if system == "redis":
        out = b""
        if patterns:
            out += _resp(["PSUBSCRIBE", *patterns])
            return out + _resp(["PING"]), b"$4\r\npong\r\n"
        return _resp(["PING"]), b"+PONG\r\n"
    raise ValueError(system)


def _resp(words: list[str]) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for w in words:
        b = w.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def _open(system: str, address: str, patterns: list[str], i: int) -> Conn:
    loop = asyncio.get_running_loop()
    setup, ready_at = _setup(system, patterns, i)
    factory = lambda: Conn(system, setup, ready_at)  # noqa: E731
    if address.startswith("/"):
        _, conn = await loop.create_unix_connection(factory, address)
    else:
        host, port = address.rsplit(":", 1)
        _, conn = await loop.create_connection(factory, host, int(port))
    await asyncio.wait_for(conn.ready, 60)
    return conn


class ClientConn:
    """A real UnixBus client with one Subscription per pattern."""

    def __init__(self, bus, subs) -> None:
        self.bus, self.subs = bus, subs

    @property
    def count(self) -> int:
        return sum(s.queued for s in self.subs)


async def _open_client(address: str, patterns: list[str], i: int) -> ClientConn:
    from decnet.bus import UnixBus

    bus = UnixBus(address, name=f"scale-{os.getpid()}-{i}")
    await bus.connect(timeout=30)
    subs = []
    for p in patterns:
        sub = bus.subscribe(p)
        await sub.__aenter__()
        subs.append(sub)
    await bus.flush()
    return ClientConn(bus, subs)


async def main(spec: dict) -> None:
    system, address, conns = spec["system"], spec["address"], spec["conns"]
    opened: list = []
    chunk = 100  # connects in flight at once: the broker's backlog is 1024
    for start in range(0, len(conns), chunk):
        batch = conns[start:start + chunk]
        if system == "decnet-client":
            opened += await asyncio.gather(*(_open_client(address, p, start + k) for k, p in enumerate(batch)))
        else:
            opened += await asyncio.gather(*(_open(system, address, p, start + k) for k, p in enumerate(batch)))
    base = [c.count for c in opened]
    emit(ev="ready", conns=len(opened), pid=os.getpid())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "counts":
            emit(ev="counts", n=[c.count - b for c, b in zip(opened, base)])
        elif line in ("quit", ""):
            break
    for c in opened:
        if system == "decnet-client":
            await c.bus.close()
        else:
            c.transport.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    asyncio.run(main(spec))
