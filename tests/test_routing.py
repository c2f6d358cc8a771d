"""The broker's routing core (Outbox, route, relay, RouteStats), for both twins."""

import pytest

from decnet.bus import FrameError


def box(impl, limit=1 << 20, stats=None, dirty=None):
    stats = stats if stats is not None else impl.RouteStats()
    dirty = dirty if dirty is not None else []
    return impl.Outbox(stats, limit, dirty), stats, dirty


def evt(impl, n, size=0):
    return impl.encode("EVT", "t", str(n).encode().ljust(size, b" "))


def test_send_queues_and_marks_dirty_once(impl):
    out, _, dirty = box(impl)
    frames = [evt(impl, i) for i in range(3)]
    for frame in frames:
        out.send(frame)
    assert dirty == [out] and out.dirty and out.pending
    assert out.take() == frames
    assert not out.dirty and not out.pending and out.take() == []


def test_over_the_limit_the_oldest_evts_go_and_are_counted(impl):
    frames = [evt(impl, i, 100) for i in range(10)]
    out, stats, _ = box(impl, limit=len(frames[0]) * 4)
    pong = impl.encode("PONG")
    out.send(frames[0])
    out.send(pong)
    for frame in frames[1:]:
        out.send(frame)
    assert out.size <= out.limit
    assert out.dropped == stats.dropped == 6
    # The PONG survives shedding and goes out first; then the newest four events.
    assert out.take() == [pong] + frames[6:]


def test_take_in_slices_keeps_order(impl):
    frames = [evt(impl, i, 1000) for i in range(20)]
    out, _, _ = box(impl)
    for frame in frames:
        out.send(frame)
    got = []
    while out.pending:
        part = out.take(4096)
        assert part and sum(map(len, part)) < 4096 + 1100
        got += part
    assert got == frames


def test_closing_outbox_takes_nothing_and_discard_counts_what_was_lost(impl):
    out, stats, _ = box(impl)
    out.send(evt(impl, 1))
    out.send(impl.encode("PONG"))
    assert out.discard() == 1 and stats.dropped == 1
    out.send(evt(impl, 2))
    assert not out.pending


def test_route_honours_echo_and_counts(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    dirty = []
    a, b = impl.Outbox(stats, 1 << 20, dirty), impl.Outbox(stats, 1 << 20, dirty)
    index.add("decky.*.state", a)
    index.add("decky.d1.>", a)  # a second match of a: still one frame for a
    index.add("decky.>", b)
    frame = impl.encode("EVT", "decky.d1.state", b"{}")
    assert impl.route(index, a, True, "decky.d1.state", frame) == 2
    assert impl.route(index, a, False, "decky.d1.state", frame) == 1
    assert impl.route(index, None, True, "nobody", frame) == 0
    assert a.take() == [frame] and b.take() == [frame, frame]


def test_relay_routes_pubs_and_hands_back_everything_else_in_order(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    sub = impl.Outbox(stats, 1 << 20, [])
    index.add("a.*", sub)
    decoder = impl.FrameDecoder(relay=True)
    stream = (impl.encode("PUB", "a.1", b"1") + impl.encode("SUB", "b") + impl.encode("PUB", "a.2", b"2")
              + impl.encode("PUB", "a..bad", b"x") + impl.encode("PUB", "system.bus.health", b"x")
              + impl.encode("PUB", "a.3", b"3"))
    decoder.feed(stream)
    handed = []
    while (frame := impl.relay(decoder, index, sub, True, stats)) is not None:
        handed.append(frame[:2])
    assert handed == [("SUB", "b"), ("PUB", "a..bad"), ("PUB", "system.bus.health")]
    assert sub.take() == [impl.encode("EVT", t, b) for t, b in [("a.1", b"1"), ("a.2", b"2"), ("a.3", b"3")]]
    assert (stats.published, stats.routed) == (3, 3)


def test_relay_raises_framing_errors_after_routing_what_came_before(impl):
    index = impl.SubscriptionIndex()
    stats = impl.RouteStats()
    sub = impl.Outbox(stats, 1 << 20, [])
    index.add(">", sub)
    decoder = impl.FrameDecoder(relay=True)
    decoder.feed(impl.encode("PUB", "a", b"1") + b"NOPE\n\x00\x00\x00\x00")
    with pytest.raises(FrameError):
        impl.relay(decoder, index, sub, True, stats)
    assert stats.published == 1 and len(sub.take()) == 1


def test_an_outbox_past_its_stall_mark_asks_once_per_drain(impl):
    stats = impl.RouteStats()
    frame = evt(impl, 0, 100)
    out = impl.Outbox(stats, len(frame) * 100, [], len(frame) * 3)
    for _ in range(3):
        out.send(frame)
    assert not stats.pressure
    out.send(frame)  # past the mark, and it has drained since it last asked (never asked)
    assert stats.pressure
    stats.pressure = False
    for _ in range(10):
        out.send(frame)
    assert not stats.pressure  # a reader that does not drain asks only once
    out.take(len(frame))  # it read some: it may ask again
    out.send(frame)
    assert stats.pressure


def test_stall_mark_zero_never_asks(impl):
    stats = impl.RouteStats()
    out = impl.Outbox(stats, 1000, [])
    for i in range(50):
        out.send(evt(impl, i, 100))
    assert not stats.pressure and out.dropped > 0
