"""One-way latency of decnet-bus alone, stripped down: one broker, one
publisher at a fixed rate, one subscriber, nothing else in the processes.

    python bench/latency.py [--broker-loop uvloop|asyncio] [--client-loop uvloop|asyncio] [--rate 1000] [--seconds 8]

Compare with bench/fanout.py's latency phase, whose harness processes do more.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time

import uvloop

from decnet.bus import UnixBus
from decnet.bus.testing import BrokerProcess

PAD = "x" * 150


def run(loop: str, coro):
    return uvloop.run(coro) if loop == "uvloop" else asyncio.run(coro)


def subscriber(path, loop, ready, out) -> None:
    async def main() -> None:
        bus = UnixBus(path)
        samples = []
        async with bus.subscribe("decky.*.state") as sub:
            ready.put(1)
            async for evt in sub:
                now = time.monotonic()
                payload = evt.payload
                if payload["seq"] < 0:
                    break
                samples.append(now - payload["ts"])
        await bus.close()
        out.put(samples)

    run(loop, main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker-loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--client-loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    ctx = mp.get_context("fork")
    with BrokerProcess(None, "--log-level", "warning", loop=args.broker_loop, pure=False) as broker:
        ready, out = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=subscriber, args=(broker.path, args.client_loop, ready, out))
        proc.start()
        ready.get(timeout=30)

        cpu = {}

        async def publish() -> None:
            bus = UnixBus(broker.path)
            await bus.connect()
            total = int(args.rate * args.seconds)
            cpu0 = time.process_time()
            t0 = time.monotonic()
            for i in range(total):
                delay = t0 + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await bus.publish("decky.d1.state", {"seq": i, "ts": time.monotonic(), "pad": PAD})
            cpu["publisher"] = (time.process_time() - cpu0) / (time.monotonic() - t0)
            await bus.publish("decky.d1.state", {"seq": -1, "ts": 0.0})
            await bus.flush()
            await bus.close()

        run(args.client_loop, publish())
        samples = sorted(out.get(timeout=60))
        proc.join(10)
    def q(f: float) -> float:
        return samples[min(len(samples) - 1, int(len(samples) * f))] * 1e6

    print(f"broker={args.broker_loop} clients={args.client_loop} rate={args.rate:g}/s n={len(samples)}: "
          f"p50={q(0.5):.0f} µs p90={q(0.9):.0f} p99={q(0.99):.0f} p99.9={q(0.999):.0f} max={samples[-1] * 1e6:.0f}; "
          f"publisher CPU {cpu['publisher']:.0%} of a core while pacing")


if __name__ == "__main__":
    main()
