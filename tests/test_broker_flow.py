"""The broker's flow control, in process: ``BrokerProtocol``s on transports the
test drives, so that "the client stopped reading" (``pause_writing``) and "it
reads again" (``resume_writing``) happen exactly where the test says. Every
test runs on both twins (``impl``) and both loops (``run``)."""

from __future__ import annotations

import asyncio

import orjson

from decnet.bus.config import BrokerConfig
from decnet.bus.broker_connection import MAX_REPLIES_PAUSED, BrokerProtocol, Flow
from decnet.bus.unix_server import Broker

HELLO_BODY = orjson.dumps({"v": 1, "name": "flow", "pid": 0})


class Transport:
    """What the broker writes (each write call apart), and whether it is reading."""

    def __init__(self, impl, conn=None) -> None:
        self.impl = impl
        self.conn = conn  # told of its loss when closed, as a real transport would
        self.writes: list[list[bytes]] = []
        self.reading = True
        self.closed = False
        self.aborted = False
        self.resumed = asyncio.Event()
        self.gone = asyncio.Event()

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        return default

    def write(self, data: bytes) -> None:
        self.writes.append([bytes(data)])

    def writelines(self, frames) -> None:
        self.writes.append([bytes(f) for f in frames])

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        self.resumed.set()

    def close(self) -> None:
        self.closed = True
        if self.conn is not None:
            asyncio.get_running_loop().call_soon(self.lost)

    def abort(self) -> None:
        self.aborted = True
        self.lost()

    def lost(self) -> None:
        if not self.gone.is_set():
            self.gone.set()
            self.conn.connection_lost(None)

    def frames(self) -> list[tuple]:
        return list(self.impl.FrameDecoder(1 << 30).feed(b"".join(b"".join(w) for w in self.writes)))

    def verbs(self) -> list[str]:
        return [frame[0] for frame in self.frames()]


def connect(broker: Broker, impl, hello: bool = True, reports_loss: bool = False) -> tuple[BrokerProtocol, Transport]:
    conn = BrokerProtocol(broker)
    transport = Transport(impl, conn if reports_loss else None)
    conn.connection_made(transport)
    if hello:
        conn.data_received(impl.encode("HELLO", None, HELLO_BODY))
    return conn, transport


def test_a_client_that_stops_reading_is_read_until_its_replies_pile_up(impl, run):
    async def main():
        ping = impl.encode("PING")
        conn, transport = connect(Broker(BrokerConfig(), impl=impl), impl)
        conn.pause_writing()  # its socket is full: it is not reading
        conn.data_received(ping * (MAX_REPLIES_PAUSED - 1))
        assert transport.reading and conn.state is Flow.READING, "a few replies waiting must not stop the broker reading it"
        conn.data_received(ping * 2000)
        assert not transport.reading and conn.state is Flow.GAGGED, "past the limit the broker must stop reading it"
        # ... and stop acting on what it already read: the replies stay bounded.
        assert conn.box.size == MAX_REPLIES_PAUSED * len(impl.encode("PONG"))
        assert transport.verbs() == ["HELLO"]  # nothing written while paused

        conn.resume_writing()  # it reads again
        assert transport.reading and conn.state is Flow.READING
        # The PINGs left in the decoder when it was gagged are answered too:
        # no new data would come to push them, the client waits for them.
        assert transport.verbs().count("PONG") == MAX_REPLIES_PAUSED - 1 + 2000
        conn.connection_lost(None)

    run(main())


def test_a_reply_that_fills_the_readers_own_queue_holds_nobody(impl, run):
    """The stall holds publishers; a subscriber whose own PONG crosses its
    queue's stall mark is not held."""

    async def main():
        broker = Broker(BrokerConfig(queue_limit=1000, max_stall=1.0), impl=impl)  # stall mark at 750 bytes
        sub, sub_transport = connect(broker, impl)
        pub, pub_transport = connect(broker, impl)
        sub.data_received(impl.encode("SUB", "x"))
        sub.pause_writing()
        event = impl.encode("PUB", "x", b"1" * 40)
        evt_size = len(impl.encode("EVT", "x", b"1" * 40))
        fill = (broker.stall_at - 5) // evt_size
        pub.data_received(event * fill)
        assert sub.box.size <= broker.stall_at and broker.stalls == 0
        # Top the queue up to a few bytes under the mark, then the PONG crosses it.
        rest = broker.stall_at - sub.box.size - 2
        pub.data_received(impl.encode("PUB", "x", b"2" * (rest - len(impl.encode("EVT", "x", b"")))))
        assert broker.stalls == 0 and broker.stall_at - sub.box.size == 2
        sub.data_received(impl.encode("PING"))
        assert sub.box.size > broker.stall_at
        assert broker.stalls == 0 and sub.state is Flow.READING and sub_transport.reading
        # A publisher that puts it past the mark is held.
        sub.resume_writing()
        sub.pause_writing()
        pub.data_received(event * (fill + 2))
        assert broker.stalls == 1 and pub.state is Flow.STALLED and not pub_transport.reading
        for conn in (sub, pub):
            conn.connection_lost(None)

    run(main())


def test_a_stalled_publisher_is_read_again_after_max_stall(impl, run):
    async def main():
        broker = Broker(BrokerConfig(queue_limit=1000, max_stall=0.01), impl=impl)
        sub, _ = connect(broker, impl)
        pub, pub_transport = connect(broker, impl)
        sub.data_received(impl.encode("SUB", "x"))
        sub.pause_writing()
        pub.data_received(impl.encode("PUB", "x", b"1" * 800))
        assert pub.state is Flow.STALLED and not pub_transport.reading
        await asyncio.wait_for(pub_transport.resumed.wait(), 10)
        assert pub.state is Flow.READING and broker.stalls == 1

    run(main())


def test_err_slow_consumer_comes_after_the_hello_reply_and_in_the_last_write(impl, run):
    async def main():
        broker = Broker(BrokerConfig(queue_limit=1000, max_stall=0), impl=impl)
        sub, sub_transport = connect(broker, impl)
        pub, _ = connect(broker, impl)
        sub.data_received(impl.encode("SUB", "x"))
        sub.pause_writing()
        pub.data_received(impl.encode("PUB", "x", b"1" * 300) * 10)  # past the limit: the oldest dropped
        assert sub.dropped > 0 and sub_transport.verbs() == ["HELLO"]
        sub.data_received(impl.encode("BYE"))  # the close writes regardless of back-pressure
        last = [frame[0] for frame in impl.FrameDecoder(1 << 30).feed(b"".join(sub_transport.writes[-1]))]
        assert last[0] == "ERR" and last[-1] == "BYE" and set(last[1:-1]) == {"EVT"}
        err = orjson.loads(sub_transport.frames()[1][2])
        assert err["code"] == "slow_consumer" and err["dropped"] == sub.dropped
        assert sub.state is Flow.CLOSING and sub_transport.closed

    run(main())


def test_without_batching_each_delivery_is_its_own_write_and_nobody_is_held(impl, run):
    async def main():
        for batch, writes in ((True, 1), (False, 3)):
            broker = Broker(BrokerConfig(queue_limit=1000, batch_writes=batch), impl=impl)
            sub, sub_transport = connect(broker, impl)
            pub, pub_transport = connect(broker, impl)
            sub.data_received(impl.encode("SUB", "x"))
            before = len(sub_transport.writes)
            pub.data_received(b"".join(impl.encode("PUB", "x", b"%d" % i) for i in range(3)) + impl.encode("PING"))
            assert len(sub_transport.writes) - before == writes
            assert [f[2] for f in sub_transport.frames()[1:]] == [b"0", b"1", b"2"]
            assert pub_transport.verbs() == ["HELLO", "PONG"]
        # A paused subscriber past its stall mark holds nobody without batching.
        sub.pause_writing()
        pub.data_received(impl.encode("PUB", "x", b"1" * 400) * 3)
        assert broker.stalls == 0 and pub.state is Flow.READING and sub.dropped > 0

    run(main())


def test_silence_before_hello_is_cut_by_the_connections_own_timer(impl, run):
    async def main():
        broker = Broker(BrokerConfig(hello_timeout=0.05), impl=impl)
        conn, transport = connect(broker, impl, hello=False, reports_loss=True)
        await asyncio.wait_for(transport.gone.wait(), 10)
        frame = transport.frames()[-1]
        assert frame[0] == "ERR" and orjson.loads(frame[2])["code"] == "hello_timeout"
        assert not broker.connections

    run(main())


def test_shutdown_returns_when_the_last_connection_is_gone(impl, run):
    async def main():
        broker = Broker(BrokerConfig(), impl=impl)
        conns = [connect(broker, impl, reports_loss=True) for _ in range(3)]
        await asyncio.wait_for(broker.shutdown(timeout=30), 10)  # well before its timeout
        assert not broker.connections
        for conn, transport in conns:
            assert transport.verbs()[-1] == "BYE" and transport.closed and not transport.aborted

    run(main())


def test_shutdown_aborts_connections_that_outlive_its_timeout(impl, run):
    async def main():
        broker = Broker(BrokerConfig(), impl=impl)
        conns = [connect(broker, impl, reports_loss=True) for _ in range(2)]
        for _, transport in conns:  # a close that never completes: only abort() ends it
            transport.close = lambda transport=transport: setattr(transport, "closed", True)
        await broker.shutdown(timeout=0.01)
        assert not broker.connections
        assert all(transport.aborted for _, transport in conns)

    run(main())
