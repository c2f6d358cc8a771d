"""What a bridge between buses needs from the client: ``publish_raw`` relays
payload bytes untouched, and one Subscription to several patterns yields an
event that matches more than one of them once, in the broker's order."""

import asyncio

import pytest

from decnet.bus import BusError, FakeBus, NullBus, TopicError, UnixBus

WAIT = 15.0


async def next_event(sub, timeout=WAIT):
    return await asyncio.wait_for(sub.__anext__(), timeout)


# Bytes orjson would never produce (spaces, key order, a float spelled long):
# a round trip through decode/encode would change them.
ODD_JSON = b'{ "b" : 1,\n "a": 1.50000 }'


def test_publish_raw_delivers_the_exact_bytes(broker, run):
    async def main():
        async with UnixBus(broker.path, name="sub") as sub_bus, UnixBus(broker.path, name="pub") as pub_bus:
            async with sub_bus.subscribe("decky.>") as sub:
                await pub_bus.publish_raw("decky.d1.state", ODD_JSON)
                await pub_bus.publish_raw("decky.d1.state", b"")
                await pub_bus.flush()
                first, second = await next_event(sub), await next_event(sub)
        assert first.raw == ODD_JSON and first.payload == {"b": 1, "a": 1.5}
        assert second.raw == b"" and second.payload is None
        assert pub_bus.published == 2

    run(main())


@pytest.mark.parametrize("make", [lambda: UnixBus("unused.sock"), FakeBus, NullBus], ids=["unix", "fake", "null"])
def test_publish_raw_refuses_what_publish_refuses(make, run):
    async def main():
        bus = make()
        with pytest.raises(TopicError):
            await bus.publish_raw("decky.*.state", b"{}")
        with pytest.raises(TopicError):
            await bus.publish_raw("system.bus.health", b"{}")
        with pytest.raises(TypeError):
            await bus.publish_raw("decky.d1.state", "{}")
        if not isinstance(bus, NullBus):
            with pytest.raises(BusError):
                await bus.publish_raw("decky.d1.state", b"0" * (2 * 1024 * 1024))
        await bus.close()

    run(main())


def test_fake_bus_publish_raw_keeps_the_bytes(run):
    async def main():
        bus = FakeBus()
        async with bus.subscribe("a.>") as sub:
            await bus.publish_raw("a.b", ODD_JSON)
            evt = await next_event(sub)
        assert evt.raw == ODD_JSON and bus.events[0].raw == ODD_JSON

    run(main())


def test_one_subscription_to_overlapping_patterns_yields_each_event_once_in_order(broker, run):
    async def main():
        async with UnixBus(broker.path, name="sub") as sub_bus, UnixBus(broker.path, name="pub") as pub_bus:
            async with sub_bus.subscribe("decky.>", "decky.*.state", "topology.*.status", "decky.>") as sub:
                assert sub.patterns == ("decky.>", "decky.*.state", "topology.*.status")
                topics = ["decky.d1.state", "topology.t1.status", "decky.d2.traffic", "other.x", "decky.d1.state"]
                for n, topic in enumerate(topics):
                    await pub_bus.publish(topic, n)
                await pub_bus.flush()
                got = [await next_event(sub) for _ in range(4)]
                await sub_bus.flush()
                assert sub.queued == 0
        assert [(e.topic, e.payload) for e in got] == [
            ("decky.d1.state", 0), ("topology.t1.status", 1), ("decky.d2.traffic", 2), ("decky.d1.state", 4)]

    run(main())


def test_closing_a_multi_pattern_subscription_unsubscribes_only_what_no_other_holds(broker, run):
    async def main():
        async with UnixBus(broker.path, name="sub") as sub_bus, UnixBus(broker.path, name="pub") as pub_bus:
            async with sub_bus.subscribe("a.>") as keep:
                async with sub_bus.subscribe("a.>", "b.>"):
                    assert set(sub_bus._pattern_refs) == {"a.>", "b.>"}
                assert set(sub_bus._pattern_refs) == {"a.>"}
                await pub_bus.publish("b.x", 1)
                await pub_bus.publish("a.x", 2)
                await pub_bus.flush()
                assert (await next_event(keep)).payload == 2

    run(main())


def test_fake_bus_multi_pattern_subscription_yields_once(run):
    async def main():
        bus = FakeBus()
        async with bus.subscribe("a.>", "a.*") as sub:
            await bus.publish("a.b", 1)
            await bus.publish("a.b.c", 2)
            assert [(await next_event(sub)).payload for _ in range(2)] == [1, 2]
            assert sub.queued == 0

    run(main())
