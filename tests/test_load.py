"""Load: 200 clients publishing and subscribing at once — no errors,
no loss, no growth; throughput reported.

Short by default (5 s); ``DECNET_BUS_STRESS=long`` holds it for a minute.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections import defaultdict


from stress import report, scale

from decnet.bus import UnixBus
from decnet.bus.testing import BrokerProcess, rss

FORK = mp.get_context("fork")
PROCESSES = 4
CLIENTS_PER_PROCESS = 50
GROUPS = 10  # client c subscribes to load.<c % GROUPS>.*: each event reaches 20 clients
RATE = 25.0  # events/s each client publishes


def _clients(path, first, loop_name, seconds, go, published_all, out) -> None:
    import uvloop

    async def main() -> None:
        ids = range(first, first + CLIENTS_PER_PROCESS)
        buses = {c: UnixBus(path, name=f"load-{c}") for c in ids}
        for bus in buses.values():  # connected first: entering a subscription waits only 0.5 s
            await bus.connect(timeout=60)
        subs = {c: buses[c].subscribe(f"load.{c % GROUPS}.*") for c in ids}
        for sub in subs.values():
            await sub.__aenter__()
        for bus in buses.values():
            await bus.flush(timeout=60)
        received = {c: defaultdict(int) for c in ids}
        problems = defaultdict(int)

        async def consume(c, sub) -> None:
            last = {}
            async for evt in sub:
                if evt.gap:
                    problems[f"gap:{evt.reason}"] += 1
                    continue
                p, s = evt.payload["c"], evt.payload["s"]
                if s != last.get(p, -1) + 1:
                    problems["hole or reorder"] += 1
                last[p] = s
                received[c][p] += 1

        async def produce(c, bus, end) -> int:
            topic, seq, t0 = f"load.{c % GROUPS}.{c}", 0, time.monotonic()
            while time.monotonic() < end:
                await bus.publish(topic, {"c": c, "s": seq})
                seq += 1
                delay = t0 + seq / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            return seq

        loop = asyncio.get_running_loop()
        consumers = [asyncio.ensure_future(consume(c, sub)) for c, sub in subs.items()]
        out.put(("ready", first))
        await loop.run_in_executor(None, go.wait)
        end = time.monotonic() + seconds
        counts = await asyncio.gather(*(produce(c, buses[c], end) for c in ids))
        for bus in buses.values():
            await bus.flush(timeout=60)  # the broker has routed all we published
        out.put(("published", dict(zip(ids, counts))))
        await loop.run_in_executor(None, published_all.wait, 120)
        for bus in buses.values():
            await bus.flush(timeout=60)  # and everything routed to us has arrived
        while any(sub.queued for sub in subs.values()):
            await asyncio.sleep(0.01)  # our own consumers draining their queues
        errors = sum(bus.errors + bus.dropped + bus.broker_dropped for bus in buses.values())
        out.put(("received", {c: dict(r) for c, r in received.items()}, dict(problems), errors))
        for task in consumers:
            task.cancel()
        for c in ids:
            await subs[c].__aexit__(None, None, None)
            await buses[c].close()

    (uvloop.run if loop_name == "uvloop" else asyncio.run)(main())


def test_200_clients_publishing_and_subscribing(sockdir, loop_name):
    seconds = scale(5.0, 60.0)
    with BrokerProcess(sockdir / "bus.sock", loop=loop_name) as proc:
        out = FORK.Queue()
        go, published_all = FORK.Event(), FORK.Barrier(PROCESSES)
        procs = [FORK.Process(target=_clients, daemon=True,
                              args=(str(proc.path), i * CLIENTS_PER_PROCESS, loop_name, seconds, go, published_all, out))
                 for i in range(PROCESSES)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                assert out.get(timeout=120)[0] == "ready"
            pid = proc.proc.pid
            samples = [rss(pid)]
            go.set()
            started = time.monotonic()
            published: dict = {}
            while len(published) < PROCESSES * CLIENTS_PER_PROCESS:
                try:
                    kind, counts = out.get(timeout=1.0)
                except Exception:  # queue.Empty: sample the broker's memory meanwhile
                    samples.append(rss(pid))
                    assert time.monotonic() - started < seconds + 120, "publishers never finished"
                    continue
                assert kind == "published"
                published.update(counts)
            elapsed = time.monotonic() - started
            samples.append(rss(pid))
            results = [out.get(timeout=180) for _ in procs]
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
    problems, errors, delivered = defaultdict(int), 0, 0
    for _, received, trouble, errs in results:
        errors += errs
        for k, v in trouble.items():
            problems[k] += v
        for c, by_pub in received.items():
            want = {p: n for p, n in published.items() if p % GROUPS == c % GROUPS}
            assert by_pub == want, f"client {c} did not get exactly what its group published"
            delivered += sum(by_pub.values())
    total = sum(published.values())
    # Growth: the last third of the run against the first third, once warm.
    third = max(1, len(samples) // 3)
    growth = max(samples[-third:]) - max(samples[1:third + 1] or samples[:1])
    report("200 clients", loop=loop_name, seconds=round(elapsed, 1), published=total, delivered=delivered,
           deliveries_per_s=round(delivered / elapsed), rss_start_MiB=round(samples[0] / 2**20, 1),
           rss_end_MiB=round(samples[-1] / 2**20, 1), rss_growth_KiB=growth // 1024)
    assert not problems and errors == 0, (dict(problems), errors)
    assert delivered == total * (PROCESSES * CLIENTS_PER_PROCESS // GROUPS)
    # Measured: 0 KiB on a quiet machine. The bound leaves room for what the
    # outboxes hold in flight when the machine is overloaded and clients read late.
    assert growth < 16 * 2**20, f"broker RSS grew by {growth / 2**20:.1f} MiB under a steady load: {samples}"
