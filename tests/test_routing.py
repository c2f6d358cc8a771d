"""The broker's routing core (Outbox, FlushSet, route, relay, RouteStats), for both twins."""

import pytest

from decnet.bus import FrameError


def box(impl, limit=1 << 20, stats=None, stall_at=0):
    stats = stats if stats is not None else impl.RouteStats()
    return impl.Outbox(stats, limit, stall_at), stats


def evt(impl, n, size=0):
    return impl.encode("EVT", "t", str(n).encode().ljust(size, b" "))


def test_send_queues_and_lists_the_outbox_once_per_take_of_the_flush_set(impl):
    out, _ = box(impl)
    flush = impl.FlushSet()
    frames = [evt(impl, i) for i in range(3)]
    for frame in frames:
        out.send(frame, flush)
    assert len(flush) == 1 and out.listed and out.pending
    assert flush.take() == [out] and not flush and not out.listed
    out.send(frames[0], flush)  # listed again once the set was taken, frames taken or not
    assert flush.take() == [out]
    assert out.take() == frames + frames[:1]
    assert not out.pending and out.take() == []


def test_the_flush_set_lists_outboxes_in_the_order_they_first_got_frames(impl):
    flush = impl.FlushSet()
    a, _ = box(impl)
    b, _ = box(impl)
    for out in (b, a, b, a):
        out.send(evt(impl, 0), flush)
    assert flush.take() == [b, a]


def test_over_the_limit_the_oldest_evts_go_and_are_counted(impl):
    frames = [evt(impl, i, 100) for i in range(10)]
    out, stats = box(impl, limit=len(frames[0]) * 4)
    flush = impl.FlushSet()
    pong = impl.encode("PONG")
    out.send(frames[0], flush)
    out.send(pong, flush)
    for frame in frames[1:]:
        out.send(frame, flush)
    assert out.size <= out.limit
    assert out.dropped == stats.dropped == 6
    # The PONG survives shedding and goes out first; then the newest four events.
    assert out.take() == [pong] + frames[6:]


def test_take_in_slices_keeps_order(impl):
    frames = [evt(impl, i, 1000) for i in range(20)]
    out, _ = box(impl)
    flush = impl.FlushSet()
    for frame in frames:
        out.send(frame, flush)
    got = []
    while out.pending:
        part = out.take(4096)
        assert part and sum(map(len, part)) < 4096 + 1100
        got += part
    assert got == frames


def test_a_discarded_outbox_is_closed_and_counts_what_was_lost(impl):
    out, stats = box(impl)
    flush = impl.FlushSet()
    out.send(evt(impl, 1), flush)
    out.send(impl.encode("PONG"), flush)
    flush.take()
    assert out.discard() == 1 and stats.dropped == 1 and out.closed
    out.send(evt(impl, 2), flush)
    assert not out.pending and not flush


def test_route_honours_echo_counts_and_lists_what_it_reached(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    flush = impl.FlushSet()
    a, b, c = impl.Outbox(stats, 1 << 20), impl.Outbox(stats, 1 << 20), impl.Outbox(stats, 1 << 20)
    index.add("decky.*.state", a)
    index.add("decky.d1.>", a)  # a second match of a: still one frame for a
    index.add("decky.>", b)
    index.add("other", c)
    frame = impl.encode("EVT", "decky.d1.state", b"{}")
    assert impl.route(index, a, False, "decky.d1.state", frame, flush) == 1
    assert flush.take() == [b]
    assert impl.route(index, a, True, "decky.d1.state", frame, flush) == 2
    assert impl.route(index, None, True, "nobody", frame, flush) == 0
    assert sorted(map(id, flush.take())) == sorted(map(id, (a, b)))
    assert a.take() == [frame] and b.take() == [frame, frame] and not c.pending


def test_relay_routes_pubs_and_hands_back_everything_else_in_order(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    flush = impl.FlushSet()
    sub = impl.Outbox(stats, 1 << 20)
    index.add("a.*", sub)
    decoder = impl.FrameDecoder(relay=True)
    stream = (impl.encode("PUB", "a.1", b"1") + impl.encode("SUB", "b") + impl.encode("PUB", "a.2", b"2")
              + impl.encode("PUB", "a..bad", b"x") + impl.encode("PUB", "system.bus.health", b"x")
              + impl.encode("PUB", "a.3", b"3"))
    decoder.feed(stream)
    handed = []
    while (frame := impl.relay(decoder, index, sub, True, stats, flush)) is not None:
        handed.append(frame[:2])
    assert handed == [("SUB", "b"), ("PUB", "a..bad"), ("PUB", "system.bus.health")]
    assert flush.take() == [sub]
    assert sub.take() == [impl.encode("EVT", t, b) for t, b in [("a.1", b"1"), ("a.2", b"2"), ("a.3", b"3")]]
    assert (stats.published, stats.routed) == (3, 3)


def test_relay_with_a_limit_returns_after_that_many_pubs(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    flush = impl.FlushSet()
    sub = impl.Outbox(stats, 1 << 20)
    index.add("a", sub)
    decoder = impl.FrameDecoder(relay=True)
    decoder.feed(impl.encode("PUB", "a", b"1") + impl.encode("PUB", "nobody", b"2") + impl.encode("PING"))
    assert impl.relay(decoder, index, sub, True, stats, flush, 1) is None
    assert stats.published == 1 and sub.take() == [impl.encode("EVT", "a", b"1")]
    assert impl.relay(decoder, index, sub, True, stats, flush, 1) is None  # one not routed to anyone counts
    assert stats.published == 2
    assert impl.relay(decoder, index, sub, True, stats, flush, 1)[0] == "PING"
    assert impl.relay(decoder, index, sub, True, stats, flush, 1) is None and stats.published == 2


def test_relay_stops_after_the_pub_that_brought_pressure_and_keeps_the_rest(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    flush = impl.FlushSet(1.0)
    frame = impl.encode("EVT", "a", b"x")
    sub = impl.Outbox(stats, 1 << 20, len(frame) * 2)  # past its mark at the third event
    index.add("a", sub)
    decoder = impl.FrameDecoder(relay=True)
    decoder.feed(impl.encode("PUB", "a", b"x") * 5)
    assert impl.relay(decoder, index, None, True, stats, flush) is None
    assert flush.pressure and stats.published == 3  # the other two wait in the decoder
    flush.take()
    assert impl.relay(decoder, index, None, True, stats, flush) is None and flush.pressure and stats.published == 4
    flush.take()
    flush.now = 2.0  # its window is over: the rest goes in
    assert impl.relay(decoder, index, None, True, stats, flush) is None and not flush.pressure
    assert stats.published == 5 and len(sub.take()) == 5


def test_relay_raises_framing_errors_after_routing_what_came_before(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    flush = impl.FlushSet()
    sub = impl.Outbox(stats, 1 << 20)
    index.add(">", sub)
    decoder = impl.FrameDecoder(relay=True)
    decoder.feed(impl.encode("PUB", "a", b"1") + b"NOPE\n\x00\x00\x00\x00")
    with pytest.raises(FrameError):
        impl.relay(decoder, index, sub, True, stats, flush)
    assert stats.published == 1 and len(sub.take()) == 1 and flush.take() == [sub]


def test_an_outbox_past_its_stall_mark_asks_for_one_window_after_each_take(impl):
    frame = evt(impl, 0, 100)
    out, _ = box(impl, limit=len(frame) * 100, stall_at=len(frame) * 3)
    flush = impl.FlushSet(0.02)
    assert flush.window == 0.02
    flush.now = 100.0
    for _ in range(3):
        out.send(frame, flush)
    assert not flush.pressure
    out.send(frame, flush)  # past the mark, and it was taken from since it last asked (never asked)
    assert flush.pressure
    flush.take()
    assert not flush.pressure  # taking the set clears it
    # Every read within the window asks again (every publisher is held), not just the first.
    for now in (100.005, 100.01, 100.02):
        flush.now = now
        out.send(frame, flush)
        assert flush.pressure, now
        flush.take()
    flush.now = 100.021  # the window is over and it was not taken from: a reader that does not drain asks no more
    for _ in range(10):
        out.send(frame, flush)
    assert not flush.pressure
    out.take(len(frame))  # it read some: a new window opens with the next send past the mark
    flush.now = 500.0
    out.send(frame, flush)
    assert flush.pressure
    flush.take()
    flush.now = 500.02
    out.send(frame, flush)
    assert flush.pressure


def test_a_flush_sets_window_defaults_to_the_read_that_opened_it(impl):
    frame = evt(impl, 0, 100)
    out, _ = box(impl, limit=len(frame) * 100, stall_at=len(frame))
    flush = impl.FlushSet()
    assert flush.window == 0.0 and flush.now == 0.0
    out.send(frame, flush)
    out.send(frame, flush)
    assert flush.pressure
    flush.take()
    out.send(frame, flush)
    assert flush.pressure  # the same clock reading: the same read
    flush.take()
    flush.now = 1e-9
    out.send(frame, flush)
    assert not flush.pressure


def test_stall_mark_zero_never_asks(impl):
    out, _ = box(impl, limit=1000)
    flush = impl.FlushSet()
    for i in range(50):
        out.send(evt(impl, i, 100), flush)
    assert not flush.pressure and out.dropped > 0
