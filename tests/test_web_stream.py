"""The event stream against a real uvicorn in-process on a UNIX socket, with a
FakeBus (on uvloop and asyncio): the frames, the §8 table, ready and resync,
the shared hub, keepalives, errors, a frozen client and shutdown."""

import asyncio
import logging


from decnet.bus import FakeBus, events
from decnet.web import sse
from decnet.web.app import create_app
from decnet.web.config import WebConfig
from decnet.web.testing import TEST_SECRET
from web_support import WAIT, envelope, ready, serving, stream


def app_for(bus, **options):
    return create_app(bus, config=WebConfig(**options), secret=TEST_SECRET)


def left(app):
    """A future set each time a stream leaves its hub (no polling in the tests)."""
    hubs = app.state.hubs
    state = {"future": asyncio.get_running_loop().create_future()}
    leave = hubs.leave

    def spy(topology_id, client):
        leave(topology_id, client)
        if not state["future"].done():
            state["future"].set_result(None)

    hubs.leave = spy

    async def wait():
        await asyncio.wait_for(state["future"], WAIT)
        state["future"] = asyncio.get_running_loop().create_future()

    return wait


def test_headers_retry_ready_and_every_row_of_the_table(run, sockdir):
    async def main():
        bus = FakeBus()
        app = app_for(bus)
        async with serving(app, sockdir / "web.sock"):
            client = await stream(sockdir / "web.sock")
            assert client.headers["content-type"].startswith("text/event-stream")
            assert client.headers["cache-control"] == "no-cache"
            assert client.headers["x-accel-buffering"] == "no"
            first = await ready(client)
            assert first["payload"] == {"topology_id": "t1"} and first["v"] == 1
            sent = []
            for state in events.STATES:
                sent.append(await events.mutation(bus, "t1", "m1", state, op="update_lan",
                                                  error="x" if state == "failed" else None))
            sent.append(await events.status_changed(bus, "t1", "active", previous="deploying"))
            sent.append(await events.version_bumped(bus, "t1", 3, previous=2))
            await bus.publish("topology.t1.other", {"ignored": True})        # not in the table: not sent
            await bus.publish("topology.t1.mutation.exploded", {"x": 1})     # not a state: not sent
            await bus.publish("topology.t2.status", {"status": "other"})     # another topology
            await bus.publish("topology.t1.status", None)                     # no payload, no ts: receive time
            got = [await envelope(client) for _ in range(7)]
            assert [g["type"] for g in got] == ["mutation.enqueued", "mutation.applying", "mutation.applied", "mutation.failed",
                             "topology.status_changed", "topology.version_bumped", "topology.status_changed"]
            for envelope_, payload in zip(got, sent):
                assert envelope_["payload"] == payload and envelope_["ts"] == payload["ts"]
            assert got[6]["payload"] is None and sse._EXACT_TS.match(got[6]["ts"])
            ids = [first["id"]] + [g["id"] for g in got]
            assert ids == sorted(set(ids))
            assert app.state.hubs.hubs["t1"].ignored == 2
            await client.close()

    run(main())


def test_one_subscription_per_topology_shared_and_gone_when_the_last_leaves(run, sockdir):
    async def main():
        bus = FakeBus()
        app = app_for(bus)
        async with serving(app, sockdir / "web.sock"):
            wait_left = left(app)
            clients = [await stream(sockdir / "web.sock") for _ in range(3)]
            other = await stream(sockdir / "web.sock", "t2")
            for client in clients + [other]:
                await ready(client)
            assert bus.stats()["subscriptions"] == 2  # t1 once for three streams, t2 once
            await events.status_changed(bus, "t1", "active")
            frames = [await envelope(client) for client in clients]
            assert len({f["id"] for f in frames}) == 1  # one frame, encoded once, sent to all
            hub = app.state.hubs.hubs["t1"]
            for client in clients:
                await client.close()
                await wait_left()
            # The last stream gone: the hub and its bus subscription are, within 1 s.
            await asyncio.wait({hub.task}, timeout=1.0)
            assert hub.task.done() and bus.stats()["subscriptions"] == 1
            assert "t1" not in app.state.hubs.hubs
            await other.close()

    run(main())


def test_last_event_id_gets_a_resync(run, sockdir):
    async def main():
        app = app_for(FakeBus())
        async with serving(app, sockdir / "web.sock"):
            client = await stream(sockdir / "web.sock", last_event_id="41")
            await ready(client)
            resync = await envelope(client)
            assert (resync["type"], resync["payload"]) == ("stream.resync", {"reason": "last_event_id", "lost": None})
            await client.close()

    run(main())


def test_bus_gaps_become_resyncs(run, sockdir):
    async def main():
        bus = FakeBus()
        app = app_for(bus, subscription_queue=2)
        async with serving(app, sockdir / "web.sock"):
            client = await stream(sockdir / "web.sock")
            await ready(client)
            app.state.hubs.hubs["t1"].sub.put_gap("reconnect")
            assert (await envelope(client))["payload"] == {"reason": "reconnect", "lost": None}
            for version in range(1, 6):  # no await in between that yields: the queue of 2 overflows
                await events.version_bumped(bus, "t1", version)
            got = [await envelope(client) for _ in range(3)]
            assert got[0]["payload"] == {"reason": "overflow", "lost": 3}
            assert [g["payload"]["version"] for g in got[1:]] == [4, 5]
            await client.close()

    run(main())


def test_keepalive_comments(run, sockdir):
    async def main():
        app = app_for(FakeBus(), keepalive=0.05)
        async with serving(app, sockdir / "web.sock"):
            client = await stream(sockdir / "web.sock")
            await ready(client)
            frame = await asyncio.wait_for(client.frame(), WAIT)
            assert frame == {"comment": "keepalive"}
            await client.close()

    run(main())


class BrokenBus(FakeBus):
    def subscribe(self, pattern, **kw):
        raise RuntimeError("the database melted")


def test_an_unexpected_error_is_logged_and_the_client_gets_a_generic_error(run, sockdir, caplog):
    async def main():
        app = app_for(BrokenBus())
        async with serving(app, sockdir / "web.sock"):
            client = await stream(sockdir / "web.sock")
            assert await asyncio.wait_for(client.frame(), WAIT) == {"retry": "2000"}
            error = await envelope(client)
            assert error["type"] == "error" and error["payload"] == {"message": sse.ERROR_MESSAGE}
            assert "melted" not in str(error)
            assert await asyncio.wait_for(client.frame(), WAIT) is None  # the stream ended
            await client.close()

    with caplog.at_level(logging.ERROR):
        run(main())
    assert any("melted" in (r.exc_text or "") or (r.exc_info and "melted" in str(r.exc_info[1]))
               for r in caplog.records)


class LateBus(FakeBus):
    """A bus whose broker is away until ``up()``: a subscription made before
    is owed a Gap("connect"), as UnixBus does."""

    def __init__(self):
        super().__init__()
        self.down = True

    async def _attach(self, sub):
        self._register(sub)
        if self.down:
            sub.missed("connect")

    def up(self):
        self.down = False
        for sub in list(self._subscriptions):
            sub.live_again()


def test_bus_down_at_connect_stream_stays_open_then_ready_and_resync(run, sockdir):
    async def main():
        bus = LateBus()
        app = app_for(bus)
        async with serving(app, sockdir / "web.sock"):
            client = await stream(sockdir / "web.sock")
            assert await asyncio.wait_for(client.frame(), WAIT) == {"retry": "2000"}
            await events.status_changed(bus, "t1", "lost-while-down")  # the broker would not have it
            bus.up()
            got = [await envelope(client) for _ in range(2)]
            assert [g["type"] for g in got] == ["stream.ready", "stream.resync"]
            assert got[1]["payload"] == {"reason": "bus_unavailable", "lost": None}
            await events.status_changed(bus, "t1", "active")
            assert (await envelope(client))["payload"]["status"] == "active"
            await client.close()

    run(main())


def test_a_frozen_client_is_dropped_and_the_healthy_one_keeps_receiving(run, sockdir, caplog):
    async def main():
        bus = FakeBus()
        app = app_for(bus, send_timeout=0.5, client_queue=8)
        async with serving(app, sockdir / "web.sock"):
            wait_left = left(app)
            healthy = await stream(sockdir / "web.sock")
            frozen = await stream(sockdir / "web.sock")  # reads its head, then nothing
            await ready(healthy)
            big = "x" * 32768
            n = 0
            while app.state.hubs.streams() == 2:  # until the frozen one is dropped
                n += 1
                await events.status_changed(bus, "t1", f"s{n}", previous=big)
                got = await envelope(healthy)
                assert got["payload"]["status"] == f"s{n}"
                if n % 50 == 0:
                    await asyncio.sleep(0.1)  # let the send timeout run out in real time
                assert n < 10_000, "the frozen client was never dropped"
            await wait_left()
            hub = app.state.hubs.hubs["t1"]
            assert len(hub.clients) == 1
            await events.status_changed(bus, "t1", "after")
            assert (await envelope(healthy))["payload"]["status"] == "after"
            # The frozen client's connection was closed: reading it ends.
            while await asyncio.wait_for(frozen.frame(), WAIT) is not None:
                pass
            assert frozen.cut
            await frozen.close()
            await healthy.close()

    with caplog.at_level(logging.INFO):
        run(main())
    assert any("read nothing" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_shutdown_ends_the_streams(run, sockdir):
    async def main():
        app = app_for(FakeBus())
        async with serving(app, sockdir / "web.sock") as server:
            client = await stream(sockdir / "web.sock")
            await ready(client)
            await asyncio.wait_for(server.shutdown(), WAIT)
            assert await asyncio.wait_for(client.frame(), WAIT) is None
            await client.close()
            server.shutdown = lambda *a: asyncio.sleep(0)  # done already

    run(main())


def test_a_slow_client_loses_its_oldest_frames_in_bounded_memory_and_is_told(run, sockdir):
    async def main():
        bus = FakeBus()
        app = app_for(bus, send_timeout=60, client_queue=4, client_queue_bytes=100_000)
        async with serving(app, sockdir / "web.sock"):
            slow = await stream(sockdir / "web.sock")
            await ready(slow)
            (client,) = app.state.hubs.hubs["t1"].clients
            big, n = "x" * 32768, 0
            while client.lost < 10:  # its socket is full, its queue overflowed
                n += 1
                await events.status_changed(bus, "t1", f"s{n}", previous=big)
                await asyncio.sleep(0)
                assert len(client.pending) <= 4 and client.pending_bytes <= 100_000 + 40_000
                assert n < 10_000
            await events.status_changed(bus, "t1", "last")
            seen = []
            while not seen or seen[-1]["payload"].get("status") != "last":
                seen.append(await envelope(slow))
            resyncs = [s for s in seen if s["type"] == "stream.resync"]
            assert len(resyncs) == 1 and resyncs[0]["payload"]["reason"] == "slow_client"
            assert resyncs[0]["payload"]["lost"] >= 10
            statuses = [s["payload"]["status"] for s in seen if s["type"] != "stream.resync"]
            assert len(statuses) + resyncs[0]["payload"]["lost"] == n + 1  # every frame: received or counted lost
            await slow.close()

    run(main())
