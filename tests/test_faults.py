"""Faults: clients killed mid-stream, the broker killed and
restarted, SIGTERM under load, and connection churn — the broker carries on,
leaks nothing, and a healthy publisher/subscriber pair loses nothing.

Short by default; ``DECNET_BUS_STRESS=long`` runs the long versions listed in
docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import signal
import socket
import time

import orjson
import pytest

from stress import report, scale

from decnet.bus import UnixBus
from decnet.bus.protocol import encode
from decnet.bus.testing import BrokerProcess, Raw, fds, rss

FORK = mp.get_context("fork")


def _victim(path: str, role: str, ready) -> None:
    """A worker that publishes or subscribes flat out until it is killed."""
    import uvloop

    async def main() -> None:
        bus = UnixBus(path, name=f"victim-{role}")
        await bus.connect()
        if role == "sub":
            async with bus.subscribe(">") as sub:
                await bus.flush(timeout=90)  # its PONG comes behind the flood of events
                ready.set()
                async for _ in sub:
                    pass
        ready.set()
        body = {"pad": "x" * 200}
        i = 0
        while True:
            await bus.publish(f"load.{i % 10}", body)
            i += 1

    uvloop.run(main())


def test_clients_killed_mid_stream_cost_nothing_else(sockdir, loop_name):
    waves = scale(4, 100)
    per_wave = 4  # half publishers, half subscribers
    with BrokerProcess(sockdir / "bus.sock", "--health-interval", "0.2", loop=loop_name) as proc:
        path = str(proc.path)
        watch = Raw(proc.path)
        healthy_sub, healthy_pub = Raw(proc.path), Raw(proc.path)
        healthy_sub.send(encode("SUB", "healthy.>"))
        healthy_sub.until_pong()
        baseline = watch.heartbeat()
        base_fds = fds(proc.proc.pid)
        rng = random.Random(5)
        kills = sent = 0
        for wave in range(waves):
            victims = []
            for i in range(per_wave):
                ready = FORK.Event()
                p = FORK.Process(target=_victim, args=(path, "sub" if i % 2 else "pub", ready), daemon=True)
                p.start()
                victims.append((p, ready))
            for p, ready in victims:
                assert ready.wait(120), "a victim did not get going"
            for n in range(100):  # the healthy pair carries on meanwhile
                healthy_pub.pub(f"healthy.{wave}", {"seq": sent})
                sent += 1
            for p, _ in rng.sample(victims, len(victims)):
                time.sleep(rng.uniform(0, 0.02))  # kill at scattered points mid-stream
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
            for p, _ in victims:
                p.join(10)
        healthy_pub.until_pong()
        seqs = [orjson.loads(f[2])["seq"] for f in healthy_sub.until_pong() if f[0] == "EVT"]
        assert seqs == list(range(sent)), "the healthy subscriber lost or reordered events"
        watch.until_pong()  # skip the heartbeats queued during the waves: they are stale
        after = watch.heartbeat(lambda h: h["connections"] == baseline["connections"])
        assert after["subscriptions"] == baseline["subscriptions"]
        assert fds(proc.proc.pid) == base_fds
        report("kill -9 of clients", loop=loop_name, kills=kills, healthy_events=sent, lost=0,
               published=after["published"], dropped=after["dropped"])
        for raw in (watch, healthy_sub, healthy_pub):
            raw.close()
    assert proc.proc.returncode == 0


def test_broker_killed_and_restarted_clients_are_back_within_a_second(sockdir, loop_name, run):
    restarts = scale(3, 30)
    path = sockdir / "bus.sock"
    first = BrokerProcess(path, loop=loop_name).start()
    brokers = [first]

    async def main() -> list[float]:
        pub, sub_bus = UnixBus(path, name="pub"), UnixBus(path, name="sub")
        took = []
        async with sub_bus.subscribe("beat.>") as sub:
            await sub_bus.flush()
            for n in range(restarts):
                brokers[-1].kill()
                brokers.append(BrokerProcess(path, loop=loop_name).start())
                back = time.monotonic()
                # Publish until the subscriber sees an event again: then both are back.
                got = None
                while got is None:
                    await pub.publish("beat.x", {"n": n})
                    try:
                        while True:
                            evt = await asyncio.wait_for(sub.__anext__(), 0.05)
                            if not evt.gap and evt.payload["n"] == n:
                                got = time.monotonic()
                                break
                    except asyncio.TimeoutError:
                        pass
                    assert time.monotonic() - back < 10, "the clients never came back"
                took.append(got - back)
        await pub.close()
        await sub_bus.close()
        return took

    try:
        took = run(main())
    finally:
        for b in brokers:
            b.stop()
    report("kill -9 of the broker", loop=loop_name, restarts=restarts,
           back_within_s_max=round(max(took), 3), back_within_s_median=round(sorted(took)[len(took) // 2], 3))
    assert max(took) < 1.0


def test_sigterm_under_full_load_exits_0_cleanly(sockdir, loop_name):
    path = sockdir / "bus.sock"
    proc = BrokerProcess(path, loop=loop_name).start()
    victims = []
    try:
        for i in range(4):
            ready = FORK.Event()
            p = FORK.Process(target=_victim, args=(str(path), "sub" if i % 2 else "pub", ready), daemon=True)
            p.start()
            victims.append((p, ready))
        for _, ready in victims:
            assert ready.wait(120)
        watch = Raw(path)
        # Under load: the broker has routed events to the subscribers.
        watch.heartbeat(lambda h: h["published"] > 10_000 and h["delivered"] > 10_000, timeout=30)
        code = proc.stop(signal.SIGTERM)
    finally:
        for p, _ in victims:
            p.kill()
            p.join(10)
        proc.stop(signal.SIGKILL)
    output = proc.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert not path.exists(), "the socket file must be removed"


@pytest.mark.parametrize("how", ["bye", "hangup", "mid_frame"])
def test_connection_churn_leaks_no_fds_nor_memory(sockdir, loop_name, how):
    cycles = scale(10_000, 100_000)
    with BrokerProcess(sockdir / "bus.sock", "--health-interval", "0.2", loop=loop_name) as proc:
        pid = proc.proc.pid
        hello = encode("HELLO", None, orjson.dumps({"v": 1, "name": "churn", "pid": 0}))
        ending = {"bye": encode("BYE"), "hangup": b"", "mid_frame": encode("PUB", "x.y", b"12345678")[:-3]}[how]

        def churn(n: int) -> None:
            # Each connection is accepted and answered before the next: what is
            # measured is what a connection leaves behind, not how many the
            # backlog happened to hold at once (a high-water mark).
            for i in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(proc.path))
                s.sendall(hello + encode("SUB", f"churn.{i % 50}.>"))
                assert s.recv(4096).startswith(b"HELLO")
                s.sendall(ending)
                if how == "bye":
                    while s.recv(4096):
                        pass  # the broker's BYE, then EOF
                s.close()

        probe = Raw(proc.path)
        # The broker notices each close asynchronously: the heartbeat says when
        # it holds only the probe again.
        settled = lambda h: h["connections"] == 1 and h["subscriptions"] == 1  # noqa: E731
        churn(3_000)  # warm-up: allocator pools and caches reach their high-water mark
        probe.heartbeat(settled, timeout=60)
        base_fds, base_rss = fds(pid), rss(pid)
        churn(cycles)
        probe.until_pong()  # skip the heartbeats queued during the churn: they are stale
        probe.heartbeat(settled, timeout=60)
        for _ in range(10):  # a closing socket's fd may outlive its connection by a heartbeat
            if fds(pid) == base_fds:
                break
            probe.heartbeat(settled)
        grown = rss(pid) - base_rss
        report("connect/disconnect churn", loop=loop_name, how=how, cycles=cycles,
               fds_before=base_fds, fds_after=fds(pid), rss_growth_KiB=grown // 1024)
        assert fds(pid) == base_fds
        assert grown < 2 * 1024 * 1024
        probe.close()
