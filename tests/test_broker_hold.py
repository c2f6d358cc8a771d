"""Who the broker holds when a subscriber's queue passes its stall mark: every
publisher that feeds a subscriber which is behind but reading, and nobody for
longer than one window once a subscriber stops reading. In process, on both
twins (``impl``) and both loops (``run``), with the transports of
test_broker_flow."""

from __future__ import annotations

import asyncio
import time

from test_broker_flow import HELLO_BODY, Transport, connect

from decnet.bus.broker_connection import DRAIN_SLICE, BrokerProtocol, Flow
from decnet.bus.config import BrokerConfig
from decnet.bus.unix_server import HOLD_WINDOW, Broker

READ = 256 * 1024  # what one read of a publisher's socket brings at most (uvloop, asyncio)


class Reader(Transport):
    """A subscriber's socket that takes ``budget`` more bytes, then pushes back
    (``pause_writing`` from within the write, as asyncio's transports do)."""

    def __init__(self, impl) -> None:
        super().__init__(impl)
        self.budget = 0
        self.reader: BrokerProtocol | None = None

    def writelines(self, frames) -> None:
        super().writelines(frames)
        self.budget -= sum(len(f) for f in frames)
        if self.budget <= 0 and self.reader.writable:
            self.reader.pause_writing()


class Timed(Transport):
    """A publisher's socket that adds up how long the broker did not read it."""

    def __init__(self, impl) -> None:
        super().__init__(impl)
        self.holds = 0
        self.held_s = 0.0
        self._since = 0.0

    def pause_reading(self) -> None:
        super().pause_reading()
        self.holds += 1
        self._since = time.monotonic()

    def resume_reading(self) -> None:
        super().resume_reading()
        self.held_s += time.monotonic() - self._since


def attach(broker: Broker, impl, transport: Transport) -> BrokerProtocol:
    conn = BrokerProtocol(broker)
    conn.connection_made(transport)
    conn.data_received(impl.encode("HELLO", None, HELLO_BODY))
    return conn


def evts(transport: Transport) -> list[bytes]:
    return [frame[2] for frame in transport.frames() if frame[0] == "EVT"]


def test_every_publisher_into_a_reader_that_is_behind_is_held_and_nothing_is_lost(impl, run):
    """Eight publishers, each flat out, into one subscriber that reads a
    sixteenth of what they offer, with the default queue: all of them are held
    in turn and the subscriber gets every event, in each publisher's order."""

    async def main():
        # max_stall long enough never to run out during the test: the test ends the holds.
        broker = Broker(BrokerConfig(max_stall=1.0), impl=impl)
        reader = Reader(impl)
        sub = attach(broker, impl, reader)
        reader.reader = sub
        sub.data_received(impl.encode("SUB", "x"))
        sub.pause_writing()  # behind from the start
        pubs = [connect(broker, impl)[0] for _ in range(8)]
        pad = b"." * 1000
        per = 1400  # 8 x 1400 x ~1 KiB: 11.5 MB, past the 8 MiB queue
        streams = [b"".join(impl.encode("PUB", "x", b"%d:%05d" % (p, i) + pad) for i in range(per)) for p in range(8)]
        sent = [0] * 8
        held = [0] * 8
        deepest = 0
        for turn in range(10_000):
            for p in [(turn + k) % 8 for k in range(8)]:  # who reaches the queue first changes
                pub = pubs[p]
                before = broker.stalls
                if pub.state is Flow.STALLED:
                    pub._unstall()  # its max_stall is over
                elif pub.transport.reading and sent[p] < len(streams[p]):
                    pub.data_received(streams[p][sent[p]:sent[p] + READ])
                    sent[p] += READ
                held[p] += broker.stalls - before
                deepest = max(deepest, sub.box.size)
            reader.budget = READ // 2  # it reads a sixteenth of what the publishers offer
            sub.resume_writing()
            if all(s >= len(b) for s, b in zip(sent, streams)) and not sub.box.pending and not any(
                    pub.state is Flow.STALLED for pub in pubs):
                break
        assert deepest > broker.stall_at, "the test must take the queue past its stall mark"
        assert sub.dropped == 0, f"{sub.dropped} events shed"
        got = evts(reader)
        assert len(got) == 8 * per
        for p in range(8):
            mine = [e for e in got if e.startswith(b"%d:" % p)]
            assert mine == sorted(mine) and len(mine) == per
        assert all(held), f"holds per publisher: {held}"

    run(main())


def test_a_subscriber_that_never_reads_holds_each_publisher_for_one_window_at_most(impl, run):
    """One subscriber stops reading for good, another reads everything: each
    publisher is held for at most HOLD_WINDOW holds once the stuck one's queue
    passes its mark, then never again; the reader beside it gets every event."""

    async def main():
        max_stall = 0.01
        broker = Broker(BrokerConfig(queue_limit=64 * 1024, max_stall=max_stall), impl=impl)
        stuck, stuck_transport = connect(broker, impl)
        healthy, healthy_transport = connect(broker, impl)
        for sub in (stuck, healthy):
            sub.data_received(impl.encode("SUB", "x"))
        stuck.pause_writing()  # and never reads again
        transports = [Timed(impl) for _ in range(3)]
        pubs = [attach(broker, impl, t) for t in transports]
        pad = b"." * 500
        per = 600  # 3 x 600 x ~0.5 KiB: 900 KB, far past the stuck one's 64 KiB queue
        streams = [b"".join(impl.encode("PUB", "x", b"%d:%05d" % (p, i) + pad) for i in range(per)) for p in range(3)]
        sent = [0] * 3
        start = time.monotonic()
        while time.monotonic() - start < 10:
            for p, pub in enumerate(pubs):
                if pub.transport.reading and sent[p] < len(streams[p]):
                    pub.data_received(streams[p][sent[p]:sent[p] + DRAIN_SLICE // 4])
                    sent[p] += DRAIN_SLICE // 4
            if all(s >= len(b) for s, b in zip(sent, streams)) and all(pub.state is Flow.READING for pub in pubs):
                break
            await asyncio.sleep(max_stall / 5)
        window = HOLD_WINDOW * max_stall
        for t in transports:
            # One window of holds, each a max_stall long; the timers may fire late, never early.
            assert 1 <= t.holds <= HOLD_WINDOW + 1, t.holds
            assert t.held_s <= window + max_stall + 0.5, t.held_s
        assert stuck.dropped > 0 and stuck_transport.verbs() == ["HELLO"]
        assert len(evts(healthy_transport)) == 3 * per
        # Once its window is over, the stuck subscriber holds nobody. (Each read
        # stays under the healthy one's mark: a read bigger than that would
        # take even a reader that keeps up past it before the flush.)
        stalls = broker.stalls
        for _ in range(10):
            for pub in pubs:
                pub.data_received(impl.encode("PUB", "x", pad) * 20)
        assert broker.stalls == stalls and all(pub.state is Flow.READING for pub in pubs)
        assert len(evts(healthy_transport)) == 3 * per + 3 * 200

    run(main())
