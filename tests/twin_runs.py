"""How the fuzzers drive one implementation over a stream, the same way for
the hypothesis tests (tests/test_fuzz_decoder.py) and the atheris target
(fuzz/fuzz_decoder.py): each returns plain values, so two implementations are
compared with ``==``."""

from __future__ import annotations

from decnet.bus.errors import FrameError

PATTERNS = [">", "*", "a.>", "a.*", "a.b", "*.b", "system.>"]


def drain(impl, queue) -> list:
    """What a Subscription's queue holds, read without an event loop: a closed
    queue never awaits, so each ``__anext__`` finishes at its first step."""
    queue.state = impl.CLOSED
    items = []
    while True:
        try:
            queue.__anext__().send(None)
        except StopIteration as done:
            item = done.value
            items.append(("gap", item.reason, item.lost) if item.gap else (item.topic, item.raw))
        except StopAsyncIteration:
            return items


def client(impl, chunks, max_payload):
    """``client_feed`` as the client runs it: ``(others, error, queued items, dropped)``."""
    decoder = impl.FrameDecoder(max_payload=max_payload)
    index = impl.SubscriptionIndex(cache_size=4)
    queues = [impl.EventQueue(maxsize=3) for _ in PATTERNS]
    for pattern, queue in zip(PATTERNS, queues):
        queue.state = impl.ACTIVE
        index.add(pattern, queue)
    others, error = [], None
    try:
        for chunk in chunks:
            others.extend(impl.client_feed(decoder, index, chunk))
    except FrameError as caught:
        error = (caught.code, str(caught))
    return others, error, [drain(impl, queue) for queue in queues], [queue.dropped for queue in queues]


def broker(impl, chunks, max_payload, echo):
    """``relay`` as the broker runs it: ``(returned, error, sent, counters)``.

    The sender's own outbox and another one subscribe to a few patterns; every
    frame relay() hands back is taken as handled and relay() called again."""
    decoder = impl.FrameDecoder(max_payload=max_payload, relay=True)
    index = impl.SubscriptionIndex(cache_size=4)
    stats, flush = impl.RouteStats(), impl.FlushSet()
    sender, other = impl.Outbox(stats, 1 << 20), impl.Outbox(stats, 64)
    for pattern in PATTERNS:
        index.add(pattern, other)
    index.add("a.>", sender)
    returned, error = [], None
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while (frame := impl.relay(decoder, index, sender, echo, stats, flush)) is not None:
                returned.append(frame)
    except FrameError as caught:
        error = (caught.code, str(caught))
    listed = ["sender" if box is sender else "other" for box in flush.take()]
    counters = (stats.published, stats.routed, stats.dropped, other.dropped, listed)
    return returned, error, [sender.take(), other.take()], counters
