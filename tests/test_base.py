"""The Bus and Subscription interface (base.py) on either twin: a bus runs on the
implementation it is given, its Subscriptions queue in that twin's EventQueue,
and an unentered Subscription says how to enter it."""

import asyncio

import pytest

from decnet.bus import BaseSubscription, BusError, FakeBus, NullBus, Subscription, _compat
from decnet.bus.base import subscription_class


@pytest.mark.parametrize("make", [FakeBus, NullBus], ids=["fake", "null"])
def test_a_bus_runs_on_the_implementation_it_is_given(make, impl):
    bus = make(impl=impl)
    assert bus._impl is impl
    assert type(bus._local) is impl.SubscriptionIndex
    sub = bus.subscribe("a.*")
    assert isinstance(sub, impl.EventQueue) and isinstance(sub, BaseSubscription)
    assert type(sub) is subscription_class(impl)


def test_the_selected_implementation_is_the_default():
    bus = FakeBus()
    assert bus._impl is _compat.impl
    assert type(bus.subscribe("a")) is Subscription
    assert issubclass(Subscription, _compat.EventQueue)


def test_events_flow_through_the_given_twin(impl):
    async def main():
        bus = FakeBus(impl=impl)
        async with bus.subscribe("a.*") as sub:
            await bus.publish("a.b", {"n": 1})
            await bus.publish("c.d", {"n": 2})
            await sub.close()
            got = [evt async for evt in sub]
        assert [(type(e), e.topic, e.payload) for e in got] == [(impl.Event, "a.b", {"n": 1})]
        assert type(bus.events[0]) is impl.Event and bus.published == len(bus.events) == 2

    asyncio.run(main())


def test_iterating_without_entering_says_how(impl):
    async def main():
        sub = FakeBus(impl=impl).subscribe("a")
        with pytest.raises(BusError, match="async with bus.subscribe"):
            async for _ in sub:
                pass
        async with sub:
            await sub.close()
            assert [evt async for evt in sub] == []

    asyncio.run(main())


def test_a_module_that_is_no_implementation_is_refused():
    with pytest.raises(ValueError, match="not one of the hot-path implementations"):
        FakeBus(impl=asyncio)
