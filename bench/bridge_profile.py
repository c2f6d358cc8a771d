#!/usr/bin/env python3
"""One bridge's CPU per event, one direction, in this process: where
bench/bridge.py measures the whole path, this isolates the bridge, to find
and check its hot spots.

A broker and a nats-server are started; a ``Bridge`` runs in this process,
exporting ``decky.>`` (``export``: a child process publishes ``--events``
payloads of ~200 bytes on the broker with ``publish_raw``) or importing it
(``import``: a child publishes them on NATS with nats-py, with the headers
another bridge would write). Reported: this process's CPU time until the
bridge has handed on every event, per event.

``--plain`` turns off the bridge's two shortcuts around nats-py (the header
block built once on export, the bridge's own header reader on import), so
that runs with and without it, one after the other, show what they save.
``--profile`` prints the top of a cProfile of the same run (which inflates
what it measures: compare within one mode only).

    .venv/bin/python bench/bridge_profile.py import --plain
    .venv/bin/python bench/bridge_profile.py import
    .venv/bin/python bench/bridge_profile.py export --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing as mp
import pstats
import sys
import time

import uvloop

BODY = b'{"seq":1,"ts":1.0,"pad":"' + b"x" * 150 + b'"}'


def nats_publisher(url: str, events: int) -> None:
    async def main() -> None:
        import nats

        nc = await nats.connect(url)
        for i in range(events):
            await nc.publish(f"decnet.decky.d{i % 100:02d}.state", BODY,
                             headers={"Decnet-Origin": "other", "Decnet-Seq": f"0123456789abcdef.{i}"})
            if i % 1000 == 0:
                await asyncio.sleep(0.002)  # bursts of 1,000: the bridge, not the queues, sets the pace
        await nc.flush()
        await nc.close()

    uvloop.run(main())


def bus_publisher(path: str, events: int) -> None:
    async def main() -> None:
        from decnet.bus import UnixBus

        bus = UnixBus(path)
        await bus.connect()
        for i in range(events):
            await bus.publish_raw(f"decky.d{i % 100:02d}.state", BODY)
            if i % 1000 == 0:
                await asyncio.sleep(0.002)
        await bus.flush()
        await bus.close()

    uvloop.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(prog="bridge_profile.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=["export", "import"], help="which side of the bridge to run")
    parser.add_argument("--events", type=int, default=100_000, help="events to send (default: 100000)")
    parser.add_argument("--plain", action="store_true",
                        help="nats-py's own header building and parsing, as without the bridge's shortcuts")
    parser.add_argument("--profile", action="store_true", help="also print the top 20 functions by own time")
    args = parser.parse_args()
    if args.events < 1:
        parser.error("--events must be >= 1")

    from decnet.bus.bridge import core, wire
    from decnet.bus.bridge.config import BridgeConfig
    from decnet.bus.testing import BrokerProcess
    from decnet.bus.testing.federation import NatsServer

    if args.plain:
        wire.headed_supported = lambda: False
        wire.read_headers_fast = lambda nc: None
    export = args.direction == "export"
    with NatsServer() as nats_server, BrokerProcess(None, "--log-level", "warning") as broker:
        config = BridgeConfig(servers=[nats_server.url], name="me", socket=str(broker.path), health_interval=0,
                              exports=["decky.>"] if export else [], imports=[] if export else ["decky.>"])

        async def run() -> None:
            bridge = core.Bridge(config)
            stop = asyncio.Event()
            task = asyncio.ensure_future(bridge.run(stop))
            while not bridge.live:
                await asyncio.sleep(0.05)
            target, addr = (bus_publisher, str(broker.path)) if export else (nats_publisher, nats_server.url)
            child = mp.get_context("fork").Process(target=target, args=(addr, args.events))
            profile = cProfile.Profile() if args.profile else None

            def handled() -> int:
                return (bridge.exported if export else bridge.imported) + bridge.dropped_export + bridge.dropped_import

            cpu0 = time.process_time()
            if profile:
                profile.enable()
            child.start()
            idle_since = None
            while handled() < args.events:
                await asyncio.sleep(0.05)
                if not child.is_alive():  # the rest was shed on the way (the broker's queue for the bridge)
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.0:
                        break
            if profile:
                profile.disable()
            cpu = time.process_time() - cpu0
            child.join(10)
            done = bridge.exported if export else bridge.imported
            print(f"{args.direction}{' --plain' if args.plain else ''}: {done:,} of {args.events:,} crossed, "
                  f"{cpu / max(done, 1) * 1e6:.2f} µs CPU per event in the bridge's process")
            stop.set()
            await task
            if profile:
                pstats.Stats(profile).sort_stats("tottime").print_stats(20)

        uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
