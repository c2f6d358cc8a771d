"""The broker's flow control, in process: one ``BrokerProtocol`` on a transport
the test drives, so that "the client stopped reading" (``pause_writing``) and
"it reads again" (``resume_writing``) happen exactly where the test says."""

from __future__ import annotations

import asyncio

import orjson

from decnet.bus._pure import FrameDecoder, encode
from decnet.bus.config import BrokerConfig
from decnet.bus.unix_server import MAX_REPLIES_PAUSED, Broker, BrokerProtocol

HELLO = encode("HELLO", None, orjson.dumps({"v": 1, "name": "flow", "pid": 0}))
PING = encode("PING")


class Transport:
    """What the broker writes, and whether it is reading."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.reading = True
        self.closed = False

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        return default

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def writelines(self, frames) -> None:
        self.out.extend(bytes(f) for f in frames)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    abort = close

    def verbs(self) -> list[str]:
        return [frame[0] for frame in FrameDecoder(1 << 30).feed(b"".join(self.out))]


def connect(broker: Broker) -> tuple[BrokerProtocol, Transport]:
    conn, transport = BrokerProtocol(broker), Transport()
    conn.connection_made(transport)
    conn.data_received(HELLO)
    return conn, transport


def test_a_client_that_stops_reading_is_read_until_its_replies_pile_up(run):
    async def main():
        conn, transport = connect(Broker(BrokerConfig()))
        conn.pause_writing()  # its socket is full: it is not reading
        conn.data_received(PING * (MAX_REPLIES_PAUSED - 1))
        assert transport.reading, "a few replies waiting must not stop the broker reading it"
        conn.data_received(PING * 2000)
        assert not transport.reading, "past the limit the broker must stop reading it"
        # ... and stop acting on what it already read: the replies stay bounded.
        assert conn.box.size == MAX_REPLIES_PAUSED * len(encode("PONG"))
        assert transport.verbs() == ["HELLO"]  # nothing written while paused

        conn.resume_writing()  # it reads again
        assert transport.reading
        # The PINGs left in the decoder when it was gagged are answered too:
        # no new data would come to push them, the client waits for them.
        assert transport.verbs().count("PONG") == MAX_REPLIES_PAUSED - 1 + 2000
        conn.connection_lost(None)

    run(main())


def test_a_reply_that_fills_the_readers_own_queue_holds_nobody(run):
    """The stall holds publishers; a subscriber whose own PONG crosses its
    queue's stall mark is not held (it used to be: its reading paused)."""

    async def main():
        broker = Broker(BrokerConfig(queue_limit=1000, max_stall=1.0))  # stall mark at 750 bytes
        sub, sub_transport = connect(broker)
        pub, pub_transport = connect(broker)
        sub.data_received(encode("SUB", "x"))
        sub.pause_writing()
        event = encode("PUB", "x", b"1" * 40)
        evt_size = len(encode("EVT", "x", b"1" * 40))
        fill = (broker.stall_at - 5) // evt_size
        pub.data_received(event * fill)
        assert sub.box.size <= broker.stall_at and broker.stalls == 0
        # Top the queue up to a few bytes under the mark, then the PONG crosses it.
        rest = broker.stall_at - sub.box.size - 2
        pub.data_received(encode("PUB", "x", b"2" * (rest - len(encode("EVT", "x", b"")))))
        assert broker.stalls == 0 and broker.stall_at - sub.box.size == 2
        sub.data_received(PING)
        assert sub.box.size > broker.stall_at
        assert broker.stalls == 0 and not sub.stalled and sub_transport.reading
        # A publisher that puts it past the mark is held, as before.
        sub.resume_writing()
        sub.pause_writing()
        pub.data_received(event * (fill + 2))
        assert broker.stalls == 1 and pub.stalled and not pub_transport.reading
        for conn in (sub, pub):
            conn.connection_lost(None)
        await asyncio.sleep(0)

    run(main())
