"""decnet web end to end: a real broker process, a real ``decnet web`` process
on a UNIX socket, and publishers on the bus (``decnet bus pub``, the helpers).

The test's own client runs on uvloop only: the code under test is in the
child processes (the web process runs on uvloop, as ``decnet web`` does)."""

import asyncio
import subprocess
import sys
import time

import pytest

from decnet.bus import UnixBus, events
from decnet.bus.testing import BrokerProcess, Raw
from decnet.web.testing import SSEClient, WebProcess, make_token
from stress import report, scale
from test_web_asgi import UNAUTHORIZED
from web_support import EVENTS, WAIT, envelope, ready, stream

pytestmark = pytest.mark.parametrize("loop_name", ["uvloop"])


@pytest.fixture
def web(broker):
    proc = WebProcess(broker.path, "--send-timeout", "1").start()
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.output() and "without completing" not in proc.output(), proc.output()


def pub(socket, topic, payload):
    subprocess.run([sys.executable, "-m", "decnet", "bus", "pub", "--socket", str(socket), topic, payload],
                   check=True, timeout=30)


def subscriptions(raw: Raw) -> int:
    """The broker's subscription count in a heartbeat made after everything before."""
    raw.until_pong()
    return raw.heartbeat()["subscriptions"]


def test_every_row_of_the_table(run, broker, web):
    async def main():
        client = await stream(web.path)
        await ready(client)
        bus = UnixBus(broker.path, name="mutator", publish_wait=WAIT)
        sent = [await events.mutation(bus, "t1", "m7", state, op="attach_decky",
                                      error="no such LAN" if state == "failed" else None) for state in events.STATES]
        sent.append(await events.version_bumped(bus, "t1", 8, previous=7))
        await bus.publish("topology.t1.something.else", {"x": 1})
        await bus.flush()
        pub(broker.path, "topology.t1.status", '{"status":"active","ts":"2026-11-29T16:00:00.123Z"}')
        got = [await envelope(client) for _ in range(6)]
        assert [g["type"] for g in got] == ["mutation.enqueued", "mutation.applying", "mutation.applied",
                                            "mutation.failed", "topology.version_bumped", "topology.status_changed"]
        assert [g["payload"] for g in got[:5]] == sent
        assert got[5]["ts"] == "2026-11-29T16:00:00.123Z" and got[5]["payload"]["status"] == "active"
        await bus.close()
        await client.close()

    run(main())


async def status_of(path, target, headers):
    client = await asyncio.wait_for(SSEClient.open(path, target, headers), WAIT)
    await asyncio.wait_for(client.body(), WAIT)
    await client.close()
    return client


def test_refusals_touch_no_bus(run, broker, web):
    async def main():
        with Raw(broker.path) as raw:
            base = subscriptions(raw)
            for case, spec in UNAUTHORIZED.items():
                headers = dict(spec.get("headers", {}))
                if "token" in spec:
                    headers["Authorization"] = f"Bearer {spec['token']}"
                target = EVENTS.format("t1")
                if "params" in spec:
                    target += "?" + "&".join(f"{k}={v}" for k, v in spec["params"].items())
                got = await status_of(web.path, target, headers)
                assert got.status == 401 and got.headers["www-authenticate"].startswith("Bearer"), case
            got = await status_of(web.path, EVENTS.format("t1"), {"Authorization": f"Bearer {make_token(scope='x')}"})
            assert got.status == 403
            for bad in ["*", ">", ".", "t.1", "a" * 65, "T1", "Abc"]:
                got = await status_of(web.path, EVENTS.format(bad), {"Authorization": f"Bearer {make_token()}"})
                assert got.status == 422, bad
            assert subscriptions(raw) == base
            # The measure works: a stream adds one subscription, which goes with it.
            client = await stream(web.path)
            await ready(client)
            assert subscriptions(raw) == base + 1
            await client.close()
            raw.until_pong()
            raw.heartbeat(lambda h: h["subscriptions"] == base, timeout=WAIT)

    run(main())


def test_last_event_id_gets_a_resync(run, broker, web):
    async def main():
        client = await stream(web.path, last_event_id="123")
        await ready(client)
        assert (await envelope(client))["payload"] == {"reason": "last_event_id", "lost": None}
        await client.close()

    run(main())


def test_bus_down_at_connect_then_up(run, sockdir):
    async def main():
        broker = BrokerProcess(sockdir / "bus.sock", "--health-interval", "0.2")
        with WebProcess(broker.path) as web:
            client = await stream(web.path)
            assert await asyncio.wait_for(client.frame(), WAIT) == {"retry": "2000"}
            with broker:  # starts it
                got = [await envelope(client) for _ in range(2)]
                assert [g["type"] for g in got] == ["stream.ready", "stream.resync"]
                assert got[1]["payload"]["reason"] == "bus_unavailable"
                pub(broker.path, "topology.t1.version", '{"version":1}')
                assert (await envelope(client))["type"] == "topology.version_bumped"
            await client.close()

    run(main())


def test_broker_kill9_and_restart_mid_stream(run, broker, web):
    async def main():
        client = await stream(web.path)
        await ready(client)
        broker.kill()
        broker.start()
        resync = await envelope(client, timeout=30)
        assert resync["type"] == "stream.resync" and resync["payload"]["reason"] == "reconnect"
        pub(broker.path, "topology.t1.status", '{"status":"back"}')
        assert (await envelope(client))["payload"] == {"status": "back"}
        await client.close()

    run(main())


def test_connect_disconnect_cycles_leave_nothing_behind(run, broker, web):
    cycles = scale(100, 1000)

    async def cycle():
        client = await stream(web.path)
        await ready(client)
        await client.close()

    async def main():
        with Raw(broker.path) as raw:
            await cycle()  # the web process's bus connection opens on first use, and stays
            settled = lambda h: h["subscriptions"] == 1 and h["connections"] == 2  # noqa: E731  raw + web
            raw.heartbeat(settled, timeout=WAIT)
            base_fds = web.fds()
            started = time.monotonic()
            for _ in range(cycles):
                await cycle()
            took = time.monotonic() - started
            raw.until_pong()
            raw.heartbeat(settled, timeout=WAIT)
            for _ in range(25):  # the server notices each close asynchronously
                if web.fds() == base_fds:
                    break
                raw.heartbeat()
            report("web connect/disconnect cycles", cycles=cycles, seconds=round(took, 1), fds_before=base_fds,
                   fds_after=web.fds())
            assert web.fds() == base_fds

    run(main(), timeout=600)


def test_a_frozen_client_beside_a_healthy_one(run, broker, web):
    async def main():
        healthy = await stream(web.path)
        frozen = await stream(web.path)  # its head read, then nothing
        await ready(healthy)
        bus = UnixBus(broker.path, name="mutator", publish_wait=WAIT)
        big = "x" * 32768
        started, n = time.monotonic(), 0
        while "read nothing" not in web.output():
            n += 1
            await events.status_changed(bus, "t1", f"s{n}", previous=big)
            got = await envelope(healthy)
            assert got["type"] == "topology.status_changed" and got["payload"]["status"] == f"s{n}"
            assert time.monotonic() - started < 60, "the frozen client was never dropped"
        dropped_after = time.monotonic() - started
        await events.status_changed(bus, "t1", "after")
        assert (await envelope(healthy))["payload"]["status"] == "after"
        while await asyncio.wait_for(frozen.frame(), WAIT) is not None:
            pass
        assert frozen.cut
        report("web frozen client", events=n, dropped_after_s=round(dropped_after, 2))
        await bus.close()
        await healthy.close()
        await frozen.close()

    run(main())
