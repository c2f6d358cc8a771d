"""The client against real brokers: lazy connect, drops instead of blocking,
back-pressure, reconnect with gaps, and what get_bus() builds."""

import asyncio
import socket
import time

import pytest

from decnet.bus import BusError, BusUnavailable, FakeBus, NullBus, TopicError, UnixBus, factory, get_bus
from decnet.bus.client_protocol import WRITE_HIGH
from decnet.bus.protocol import FrameDecoder, encode
from decnet.bus.testing import BrokerProcess

WAIT = 15.0


@pytest.fixture
def silent_server(sockdir):
    """A socket path where a server accepts connections and never answers."""
    path = sockdir / "silent.sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(path))
    silent.listen(4)
    yield path
    silent.close()


@pytest.fixture
def twin(impl):
    """The hot-path implementation an in-process UnixBus runs on: both twins,
    as far as the bus's local fan-out (Subscriptions and their index) follows it."""
    bus = UnixBus("unused.sock", impl=impl)
    if not (isinstance(bus._local, impl.SubscriptionIndex) and isinstance(bus.subscribe("x"), impl.EventQueue)):
        pytest.skip("Bus does not take the implementation for its Subscriptions")
    return impl


async def next_event(sub, timeout=WAIT):
    return await asyncio.wait_for(sub.__anext__(), timeout)


async def wait_until(condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_publish_without_a_broker_returns_at_once_and_counts_the_drop(sockdir, run):
    async def main():
        bus = UnixBus(sockdir / "nobody.sock")
        started = time.monotonic()
        for i in range(50):
            await bus.publish("decky.d1.state", i)
        elapsed = time.monotonic() - started
        # One that waited its publish_wait (0.1 s) on each would take 5 s.
        assert elapsed < 1.0, f"50 publishes to a missing broker took {elapsed:.3f} s"
        assert bus.dropped == 50 and bus.published == 0
        with pytest.raises(BusUnavailable, match="nobody.sock"):
            await bus.flush()
        with pytest.raises(BusUnavailable, match="decnet bus"):
            await bus.connect()
        await bus.close()

    run(main())


def test_one_sub_on_the_wire_per_distinct_pattern(broker, run):
    async def main():
        bus, probe = UnixBus(broker.path), UnixBus(broker.path)
        async with bus.subscribe("a.*"), bus.subscribe("a.*"), bus.subscribe("a.*"), bus.subscribe("b"):
            async with probe.subscribe("system.bus.health") as health:
                # Heartbeats are taken after both SUB batches were processed (flush in __aenter__).
                await next_event(health)
                beat = (await next_event(health)).payload
                assert beat["subscriptions"] == 3  # a.*, b and the probe's own
        await bus.close()
        await probe.close()

    run(main())


def test_a_tight_publish_loop_does_not_outrun_a_live_broker(broker, run):
    async def main():
        # A generous publish_wait: a loaded machine may keep the broker from
        # reading for the default 0.1 s, which would rightly count as stuck.
        pub, consumer = UnixBus(broker.path, publish_wait=WAIT), UnixBus(broker.path)
        count = 100_000
        most = 0
        async with consumer.subscribe("load.*", maxsize=count + 10) as sub:
            await pub.connect()
            for i in range(count):
                await pub.publish(f"load.{i % 10}", i)
                most = max(most, pub._proto.transport.get_write_buffer_size())
            await pub.flush()
            assert pub.dropped == 0 and pub.published == count
            # Paced, not buffered: the send buffer stayed near its high-water mark.
            assert most <= WRITE_HIGH + 64, f"the send buffer reached {most} bytes"
            last = None
            for _ in range(count):
                last = await next_event(sub)
            assert last.payload == count - 1 and sub.dropped == 0
        await pub.close()
        await consumer.close()

    run(main(), timeout=120)


def test_broker_killed_and_restarted_the_same_subscription_carries_on(sockdir, loop_name, run, twin):
    path = sockdir / "bus.sock"
    first = BrokerProcess(path, loop=loop_name).start()

    async def main():
        pub, consumer = UnixBus(path, impl=twin), UnixBus(path, impl=twin)
        try:
            async with consumer.subscribe("decky.*.state") as sub:
                await pub.publish("decky.d1.state", "before")
                assert (await next_event(sub)).payload == "before"
                first.kill()
                # While it is down, publish neither blocks nor raises.
                started = time.monotonic()
                while pub.connected or consumer.connected:
                    await asyncio.sleep(0.01)
                await pub.publish("decky.d1.state", "lost")
                assert time.monotonic() - started < 5
                assert pub.dropped >= 1
                second = BrokerProcess(path, loop=loop_name).start()
                try:
                    gap = await next_event(sub)
                    assert gap.gap and gap.reason == "reconnect"
                    # The gap comes once the broker has the subscription again.
                    await pub.publish("decky.d1.state", "after")
                    while (await next_event(sub)).payload != "after":
                        pass
                    assert consumer.connects == 2
                finally:
                    await pub.close()
                    await consumer.close()
                    second.stop()
        finally:
            first.stop()

    run(main())


def test_subscription_entered_while_the_broker_is_down_goes_live_with_a_gap(sockdir, loop_name, run):
    path = sockdir / "bus.sock"

    async def main():
        consumer = UnixBus(path)
        async with consumer.subscribe("x.>") as sub:
            assert not consumer.connected
            with BrokerProcess(path, loop=loop_name):
                gap = await next_event(sub)
                assert gap.gap and gap.reason == "connect"
                pub = UnixBus(path)
                await pub.publish("x.y", 1)
                assert (await next_event(sub)).payload == 1
                await pub.close()
                await consumer.close()

    run(main())


def test_get_bus_follows_the_environment(monkeypatch, sockdir):
    monkeypatch.setattr(factory, "_bus", None)
    monkeypatch.setenv("DECNET_BUS_ENABLED", "false")
    assert isinstance(get_bus(), NullBus)
    monkeypatch.setattr(factory, "_bus", None)
    monkeypatch.setenv("DECNET_BUS_ENABLED", "1")
    monkeypatch.setenv("DECNET_BUS_SOCKET", str(sockdir / "x.sock"))
    bus = get_bus(name="mutator")
    assert isinstance(bus, UnixBus) and bus.path == sockdir / "x.sock" and bus.name == "mutator"
    assert get_bus() is bus
    monkeypatch.setattr(factory, "_bus", None)
    monkeypatch.delenv("DECNET_BUS_ENABLED")
    assert isinstance(get_bus(), UnixBus)


def test_null_bus_does_nothing_and_its_subscriptions_end_when_closed(run):
    async def main():
        bus = NullBus()
        await bus.publish("decky.d1.state", {"state": "up"})
        await bus.flush()
        with pytest.raises(TopicError):
            await bus.publish("bad..topic", 1)
        async with bus.subscribe(">") as sub:
            reader = asyncio.ensure_future(sub.__anext__())
            await asyncio.sleep(0.01)
            assert not reader.done()
            await bus.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(reader, WAIT)

    run(main())


def test_rejected_at_connect_it_keeps_trying_and_gets_in(sockdir, loop_name, run):
    """A broker that accepts and at once hangs up (connection limit) must not
    leave the client for dead: once a slot frees, it is in, with a Gap."""
    path = sockdir / "bus.sock"

    async def main():
        with BrokerProcess(path, "--max-connections", "2", loop=loop_name):
            holder, pub = UnixBus(path), UnixBus(path)
            await holder.connect()
            await pub.connect()
            late = UnixBus(path)
            async with late.subscribe("x") as sub:
                assert not late.connected
                await holder.close()  # frees a slot
                gap = await next_event(sub)
                assert gap.gap and gap.reason == "connect"
                await pub.publish("x", "in")
                assert (await next_event(sub)).payload == "in"
            await pub.close()
            await late.close()

    run(main())


def test_a_cancelled_subscribe_leaves_nothing_behind(silent_server, run):
    """Against a server that accepts and never answers, entering a subscription
    waits; cancelling it unregisters it (no SUB kept, no queue filling)."""

    async def main():
        bus = UnixBus(silent_server, ping_timeout=30)
        sub = bus.subscribe("a.>")
        entering = asyncio.ensure_future(sub.__aenter__())
        while not bus.connected:
            await asyncio.sleep(0.01)
        entering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await entering
        assert bus.stats()["subscriptions"] == 0 and not sub.active
        bus._deliver("a.b", b"1")  # an event arriving now reaches nobody
        assert sub.queued == 0
        await bus.close()

    run(main())


def test_a_subscribe_the_broker_never_confirms_goes_live_later(silent_server, run):

    async def main():
        bus = UnixBus(silent_server, ping_timeout=0.2)
        async with bus.subscribe("a.>") as sub:  # no PONG: not an error for the caller
            assert sub.active and sub.pending_gap == "connect"
        await bus.close()

    run(main())


@pytest.mark.parametrize("hello_body", [b"not json", b"[1, 2]", b'{"v": 1, "max_payload": "big"}'])
def test_malformed_control_frames_from_a_broken_broker_do_not_crash_the_client(sockdir, run, twin, hello_body):
    """A bad HELLO reply or ERR body is logged and ignored; the events still flow."""
    path = sockdir / "broken.sock"

    async def main():
        async def serve(reader, writer):
            await reader.read(1)  # the client's HELLO has started arriving
            writer.write(encode("HELLO", None, hello_body) + encode("ERR", None, b"\xff garbage")
                         + encode("ERR", None, b'{"code": "slow_consumer", "dropped": "x"}')
                         + encode("EVT", "a.b", b'{"n": 1}'))
            await writer.drain()
            await reader.read()  # until the client goes

        server = await asyncio.start_unix_server(serve, path=str(path))
        bus = UnixBus(path, ping_timeout=0.2, impl=twin)  # this broker never answers PING
        sub = bus.subscribe("a.>")
        await sub.__aenter__()
        evt = await next_event(sub)
        assert (evt.topic, evt.payload) == ("a.b", {"n": 1})
        assert bus.max_payload == 1024 * 1024  # the default stands when the broker's is unusable
        assert bus.broker_dropped == 0
        await bus.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_a_lost_connection_takes_its_state_with_it(sockdir, run, twin):
    """A PING awaiting its PONG fails when its connection is lost (not at its
    timeout); the HELLO reply is the current connection's; the limit the last
    broker announced stands until the next one announces its own."""
    path = sockdir / "scripted.sock"
    second_hello = asyncio.Event()
    connections = []

    async def serve(reader, writer):
        number = len(connections) + 1
        connections.append(writer)
        if number == 2:
            await second_hello.wait()
        writer.write(encode("HELLO", None, b'{"client_id": %d, "max_payload": %d}' % (number, 100 * number)))
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for verb, _, _ in decoder.feed(data):
                if verb == "PING":
                    if number == 1:  # the first connection dies instead of answering
                        writer.close()
                        return
                    writer.write(encode("PONG"))

    async def main():
        server = await asyncio.start_unix_server(serve, path=str(path))
        bus = UnixBus(path, impl=twin)
        await bus.connect()
        await wait_until(lambda: bus.server is not None)
        assert bus.server["client_id"] == 1 and bus.max_payload == 100
        first = bus._proto
        with pytest.raises(BusUnavailable, match="lost"):
            await bus.flush(timeout=WAIT)
        assert first.lost and first._keepalive.done()
        await wait_until(lambda: bus.connected)
        assert bus.server is None and bus.max_payload == 100  # no HELLO reply yet on this one
        with pytest.raises(BusError, match="limit of 100 bytes"):
            await bus.publish("a", "x" * 200)
        second_hello.set()
        await bus.flush(timeout=WAIT)
        assert bus.server["client_id"] == 2 and bus.max_payload == 200 and bus.connects == 2
        await bus.publish("a", "x" * 150)
        await bus.close()
        assert bus.server is None and not bus._proto
        server.close()
        await server.wait_closed()

    run(main())


def test_a_subscription_owes_one_gap_for_what_it_may_have_missed(run):
    """The first reason stands until the subscription is live again, except
    "connect" (never live), which stands over any; one Gap, then none."""

    async def main():
        bus = FakeBus()
        async with bus.subscribe("a.>") as sub:
            sub.live_again()
            sub.missed("reconnect")
            sub.missed("slow_consumer")
            assert sub.pending_gap == "reconnect" and sub.gaps == 0
            sub.missed("connect")
            sub.missed("reconnect")
            assert sub.pending_gap == "connect"
            sub.live_again()
            sub.live_again()
            assert sub.pending_gap is None and sub.gaps == 1
            gap = await next_event(sub)
            assert gap.gap and gap.reason == "connect"
            await bus.publish("a.b", 1)
            assert (await next_event(sub)).payload == 1
            sub.missed("reconnect")
        sub.live_again()  # closed: nobody to tell
        assert sub.gaps == 1
        await bus.close()

    run(main())
