"""The client's delivery path (Event, EventQueue, deliver, client_feed), for both twins."""

import asyncio

import pytest

ACTIVE, CLOSED = 1, 2


def drain(queue):
    async def main():
        items = []
        queue.state = CLOSED
        async for item in queue:
            items.append(item)
        return items

    return asyncio.run(main())


def test_event_decodes_its_payload_once_and_lazily(impl):
    event = impl.Event("a.b", b'{"x":[1,2]}')
    assert (event.topic, event.raw, event.gap) == ("a.b", b'{"x":[1,2]}', False)
    first = event.payload
    assert first == {"x": [1, 2]} and event.payload is first
    assert impl.Event("a", b"").payload is None
    bad = impl.Event("a", b"{not json")
    with pytest.raises(ValueError):
        bad.payload


def test_queue_keeps_order_and_counts(impl):
    queue = impl.EventQueue(maxsize=10)
    queue.state = ACTIVE
    events = [impl.Event("t", str(i).encode()) for i in range(5)]
    for event in events:
        queue.put(event)
    assert queue.queued == 5
    assert drain(queue) == events
    assert queue.queued == 0 and queue.dropped == 0


def test_full_queue_drops_oldest_and_yields_one_gap_first(impl):
    queue = impl.EventQueue(maxsize=3)
    queue.state = ACTIVE
    for i in range(7):
        queue.put(impl.Event("t", str(i).encode()))
    items = drain(queue)
    assert items[0].gap and items[0].reason == "overflow" and items[0].lost == 4
    assert [int(e.raw) for e in items[1:]] == [4, 5, 6]
    assert queue.dropped == 4 and queue.gaps == 1


def test_gaps_off_still_counts(impl):
    queue = impl.EventQueue(maxsize=1, gaps=False)
    queue.state = ACTIVE
    for i in range(3):
        queue.put(impl.Event("t", str(i).encode()))
    queue.put_gap("reconnect")
    assert [int(e.raw) for e in drain(queue)] == [2]
    assert queue.dropped == 2 and queue.gaps == 2


def test_put_gap_is_in_band_and_not_dropped_for_room(impl):
    queue = impl.EventQueue(maxsize=2)
    queue.state = ACTIVE
    queue.put(impl.Event("t", b"1"))
    queue.put_gap("reconnect")
    queue.put(impl.Event("t", b"2"))
    queue.put(impl.Event("t", b"3"))  # drops event 1, keeps the gap
    items = drain(queue)
    kinds = [("gap", i.reason) if i.gap else ("evt", i.raw) for i in items]
    assert kinds == [("gap", "overflow"), ("gap", "reconnect"), ("evt", b"2"), ("evt", b"3")]


def test_a_queue_nobody_reads_stays_bounded_however_many_gaps_come(impl):
    """Regression: each ERR slow_consumer adds a Gap; unread, they piled up in
    front of the events and made every drop scan them all."""
    queue = impl.EventQueue(maxsize=100)
    queue.state = ACTIVE
    for round_ in range(2000):
        for i in range(10):
            queue.put(impl.Event("t", b"%d" % (round_ * 10 + i)))
        queue.put_gap("slow_consumer")
    items = drain(queue)
    # Never two markers in a row: at most one Gap per kept event, plus the overflow one.
    assert len(items) <= 2 * 100 + 1
    assert not any(a.gap and b.gap for a, b in zip(items[1:], items[2:]))
    events = [int(i.raw) for i in items if not i.gap]
    assert events == list(range(20_000 - 100, 20_000))
    assert items[0].gap and items[0].reason == "overflow" and items[0].lost == 20_000 - 100
    assert queue.gaps == 2000 + 1  # every loss is counted, even when its marker was merged


def test_a_reader_waits_and_is_woken(impl):
    async def main():
        queue = impl.EventQueue()
        queue.state = ACTIVE
        reader = asyncio.ensure_future(queue.__anext__())
        await asyncio.sleep(0)
        assert not reader.done()
        event = impl.Event("t", b"1")
        queue.put(event)
        assert await asyncio.wait_for(reader, 5) is event
        reader = asyncio.ensure_future(queue.__anext__())
        await asyncio.sleep(0)
        queue.state = CLOSED
        queue.wake()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(reader, 5)

    asyncio.run(main())


def test_a_queue_not_yet_active_ends_iteration_once_empty(impl):
    # Refusing to iterate an unentered Subscription is the Subscription's
    # business (tests/test_base.py), not the queue's.
    queue = impl.EventQueue()
    assert queue.state == impl.NEW
    with pytest.raises(StopAsyncIteration):
        asyncio.run(queue.__anext__())
    queue.put(impl.Event("t", b"1"))
    assert [e.raw for e in drain(queue)] == [b"1"]
    with pytest.raises(ValueError, match="maxsize"):
        impl.EventQueue(maxsize=0)


def test_deliver_shares_one_event_among_matching_queues(impl):
    index = impl.SubscriptionIndex()
    a, b, c = impl.EventQueue(), impl.EventQueue(), impl.EventQueue()
    index.add("decky.*.state", a)
    index.add("decky.>", b)
    index.add("decky.d1.state", a)  # a second pattern of a: still one event for a
    index.add("other", c)
    assert impl.deliver(index, "decky.d1.state", b"{}") == 2
    assert impl.deliver(index, "nobody.listens", b"{}") == 0
    for queue in (a, b, c):
        queue.state = CLOSED
    got_a, got_b = drain(a), drain(b)
    assert len(got_a) == len(got_b) == 1 and got_a[0] is got_b[0]
    assert drain(c) == []


def test_client_feed_delivers_evts_and_returns_the_rest(impl):
    index = impl.SubscriptionIndex()
    queue = impl.EventQueue()
    index.add(">", queue)
    decoder = impl.FrameDecoder()
    data = impl.encode("EVT", "a", b"1") + impl.encode("PONG") + impl.encode("EVT", "b", b"2") + impl.encode("ERR", None, b"{}")
    others = impl.client_feed(decoder, index, data[:-3]) + impl.client_feed(decoder, index, data[-3:])
    assert others == [("PONG", None, b""), ("ERR", None, b"{}")]
    queue.state = CLOSED
    assert [(e.topic, e.raw) for e in drain(queue)] == [("a", b"1"), ("b", b"2")]
