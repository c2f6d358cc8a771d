"""One broker connection, ``BrokerProtocol``: its handshake, its requests,
its outbox, and its flow control (``Flow``), which nothing else changes."""

from __future__ import annotations

import asyncio
import enum
import logging
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Optional

import orjson

from . import constants as C
from .errors import FrameError
from .peer import peercred

if TYPE_CHECKING:
    from .unix_server import Broker

log = logging.getLogger("decnet.bus.broker")

PUB, SUB, UNSUB, HELLO, PING, PONG, BYE = C.PUB, C.SUB, C.UNSUB, C.HELLO, C.PING, C.PONG, C.BYE
# Transport buffer marks: above HIGH the transport pauses us and events wait in
# the outbox, where drop-oldest can still reach them.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
# After a pause, the outbox moves to the transport in slices of this size, so
# a slow reader never holds more than about one slice beyond the queue limit.
DRAIN_SLICE = 64 * 1024
# Replies (PONG, ERR) queued for a client while its transport is paused. Past
# this the broker stops reading it until it reads: a client that floods PINGs
# and never reads cannot pile up PONGs, while one that reads slowly under a
# flood of events (its transport paused nearly always) still has its PING,
# SUB and UNSUB read and answered.
MAX_REPLIES_PAUSED = 1024


class Flow(enum.Enum):
    """Whether the broker reads a connection; only its ``BrokerProtocol`` moves it.

    ::

        READING --a PUB put a reading subscriber past its stall mark--> STALLED
        STALLED --max_stall seconds later--> READING
        READING --MAX_REPLIES_PAUSED replies wait, transport paused--> GAGGED
        GAGGED  --resume_writing (it reads again)--> READING
        any     --BYE, an error, the broker stopping--> CLOSING

    Both holds start from READING and only from the connection's own read (the
    stall at its end, the gag in its requests), so they never overlap.
    """

    READING = "reading"  # its frames are read and acted on
    STALLED = "stalled"  # not read for at most max_stall: a subscriber it feeds is behind, but reading
    GAGGED = "gagged"  # not read until it reads: too many replies wait for it
    CLOSING = "closing"  # its last frames are written: nothing more is read or queued


READING, STALLED, GAGGED, CLOSING = Flow.READING, Flow.STALLED, Flow.GAGGED, Flow.CLOSING


class BrokerProtocol(asyncio.Protocol):
    """One client connection: its handshake, its requests, its outbox and its flow control.

    Flow control is here and nowhere else: ``state`` (a ``Flow``) says whether
    its frames are read; ``writable`` whether its transport takes more (asyncio's
    ``pause_writing``/``resume_writing``); ``replies`` counts the replies queued
    since it stopped taking them. The outbox (``box``) is what the index holds
    for this connection: routing appends to it without calling back into
    Python, and the broker finds the connection again by its outbox.
    """

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        config = broker.config
        self.decoder = broker.impl.FrameDecoder(config.max_payload, relay=True)
        self.box = broker.impl.Outbox(broker.stats, config.queue_limit, broker.stall_at)
        self.state = READING
        self.writable = True
        self.replies = 0  # replies queued since its transport paused
        self.told_dropped = 0  # drops this client has been told of (ERR slow_consumer)
        self.transport: Optional[asyncio.Transport] = None
        self.client_id = 0
        self.hello = False
        self.said_bye = False  # a hang-up after it is a clean close
        self.name = "?"
        self.echo = True
        self.peer = (0, -1, -1)  # pid, uid, gid
        self.patterns: set[str] = set()
        self._hello_timer: Optional[asyncio.TimerHandle] = None
        if not config.batch_writes:
            self.handle = self._handle_each

    @property
    def closing(self) -> bool:
        return self.state is CLOSING

    @property
    def dropped(self) -> int:
        return self.box.dropped

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.peer = peercred(transport)
        self.broker.accept(self)
        if self.state is not CLOSING:
            timeout = self.broker.config.hello_timeout
            self._hello_timer = asyncio.get_running_loop().call_later(timeout, self._hello_timeout)

    def data_received(self, data: bytes) -> None:
        self.handle(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self.state = CLOSING
        self.box.discard()
        self.broker.release(self, exc)

    # -- reading

    def handle(self, data: bytes = b"") -> None:
        """Feed ``data`` to the decoder, act on the whole frames it holds, then
        flush: one write per connection that got anything from this read."""
        broker = self.broker
        stats = broker.stats
        published = stats.published
        broker.to_flush.now = _monotonic()  # once per read: the outboxes' stall window runs on it
        try:
            if data:
                self.decoder.feed(data)
            self._act(0)
        except FrameError as error:
            self.fail(error.code, str(error))
        # Only a publisher is held: a reply that filled the reader's own queue
        # holds nobody. relay() stopped at the PUB that brought the pressure: the
        # rest of the read waits in the decoder, so what a publisher adds to a
        # queue past its mark is one event per hold, not one read (256 KiB).
        if broker.to_flush.pressure and stats.published != published:
            self._stall()
        broker.flush()

    def _handle_each(self, data: bytes = b"") -> None:
        """``handle`` when ``batch_writes`` is off (bench only): each PUB is
        routed and written to its subscribers before the next one is decoded,
        each delivery its own write. No publisher is held: without batching
        the outboxes have no stall mark."""
        broker = self.broker
        stats = broker.stats
        try:
            if data:
                self.decoder.feed(data)
            while True:
                published = stats.published
                self._act(1)
                broker.flush()
                if stats.published == published or self.state is not READING:
                    break
        except FrameError as error:
            self.fail(error.code, str(error))
        broker.flush()

    def _act(self, limit: int) -> None:
        """Act on the whole frames the decoder holds, until it has none left or
        this connection stops being read. relay() routes every valid PUB in C
        (with ``limit``, returns after that many) and hands back the rest."""
        broker, box, decoder = self.broker, self.box, self.decoder
        relay, index, stats, flush = broker.relay, broker.index, broker.stats, broker.to_flush
        while True:
            frame = relay(decoder, index, box, self.echo, stats, flush, limit) if self.hello else next(decoder, None)
            if frame is None:
                return
            self._request(*frame)
            # Closed: nothing after it counts. Gagged: the rest waits in the
            # decoder until it reads (resume_writing).
            if self.state is not READING:
                return

    # -- flow control: the read side (state) and the write side (writable)

    def _stall(self) -> None:
        """Stop reading this publisher for at most ``max_stall`` seconds: a
        subscriber it feeds is past 75% of its queue but reading (NATS's
        stalledWait, bounded the same way). It trades a few milliseconds of the
        publisher's time for events the slow reader would otherwise lose.
        Every publisher that reaches such a queue is held, for as long as its
        reader keeps taking from it (``HOLD_WINDOW``)."""
        if self.state is not READING:
            return
        self.state = STALLED
        self.broker.stalls += 1
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(self.broker.config.max_stall, self._unstall)

    def _unstall(self) -> None:
        if self.state is STALLED:
            self.state = READING
            self._read_again()

    def _gag(self) -> None:
        """Stop reading until it reads: its replies would pile up unbounded."""
        if self.state is READING:
            self.state = GAGGED
            self.transport.pause_reading()

    def _read_again(self) -> None:
        """Read again, starting with the frames a gag or a hold left in the
        decoder (no new data may come to push them: the client may wait for
        their answers)."""
        self.transport.resume_reading()
        self.handle()

    def pause_writing(self) -> None:
        # Its requests are still read (see MAX_REPLIES_PAUSED): stopping here
        # would starve a slow reader for good, since each resume refills the
        # transport and pauses again before the loop gets to read.
        self.writable = False
        self.replies = 0

    def resume_writing(self) -> None:
        self.writable = True
        if self.state is GAGGED:
            self.state = READING
            self._read_again()
        self.drain()

    def drain(self) -> None:
        """Hand the outbox to the transport until it is empty or the transport pushes back."""
        box = self.box
        while box.pending and self.writable and self.state is not CLOSING:
            # Usually all of it in one writelines (uvloop: one writev); after a
            # pause, in slices, so a slow reader holds little beyond its queue.
            frames = box.take(DRAIN_SLICE)
            self._tell_drops(frames)
            self.transport.writelines(frames)
        if box.dropped != self.told_dropped and self.writable and self.state is not CLOSING:
            self.transport.write(self._slow_consumer_frame())  # all it was sent was dropped

    def _tell_drops(self, frames: list) -> None:
        """Put ERR slow_consumer in front of ``frames`` if events were dropped
        since the client was last told. The dropped events were the oldest
        queued, so that is where they would have been: the client learns of
        the loss in place. (The HELLO reply is never queued: it is always first.)"""
        if self.box.dropped != self.told_dropped:
            frames.insert(0, self._slow_consumer_frame())

    def _slow_consumer_frame(self) -> bytes:
        lost, self.told_dropped = self.box.dropped - self.told_dropped, self.box.dropped
        return self.broker.impl.encode(C.ERR, None, orjson.dumps({
            "code": C.E_SLOW_CONSUMER,
            "message": f"{lost} events dropped: this connection's queue passed --queue-limit ({self.broker.config.queue_limit} bytes)",
            "dropped": lost,
        }))

    # -- requests other than valid PUBs

    def _request(self, verb: str, arg: Optional[str], body: bytes) -> None:
        if verb is HELLO:
            self._hello(body)
        elif not self.hello:
            self.fail(C.E_HELLO_REQUIRED, f"{verb} before HELLO: the first frame must be HELLO")
        elif verb is PUB:  # one relay() would not route: say why
            self.broker.refuse(self, arg)
        elif verb is SUB:
            self.broker.subscribe(self, arg)
        elif verb is UNSUB:
            self.broker.unsubscribe(self, arg)
        elif verb is PING:
            self.send(self.broker.pong_frame)
        elif verb is PONG:
            pass
        elif verb is BYE:
            self.said_bye = True
            self.close()
        else:  # EVT, ERR: the server's verbs
            self.send_error(C.E_BAD_REQUEST, f"{verb} is sent by the server, not to it")

    def _hello(self, body: bytes) -> None:
        if self.hello:
            self.send_error(C.E_BAD_HELLO, "HELLO was already received")
            return
        try:
            hello = orjson.loads(body)
            ok = type(hello) is dict and hello.get("v") == C.PROTOCOL_VERSION
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            self.fail(C.E_BAD_HELLO, f'HELLO body must be JSON {{"v":{C.PROTOCOL_VERSION},"name":str,"pid":int}}')
            return
        self.hello = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self.name = str(hello.get("name", "?"))[:64]
        self.echo = hello.get("echo", True) is not False
        # Straight to the transport: nothing can be queued for a connection
        # before its HELLO, so the reply is first, ahead of any ERR slow_consumer.
        self.transport.write(self.broker.impl.encode(HELLO, None, orjson.dumps(self.broker.hello_reply(self))))
        pid, uid, gid = self.peer
        log.info("connect #%d %r pid=%d uid=%d gid=%d (hello pid=%s)", self.client_id, self.name, pid, uid, gid, hello.get("pid"))

    def _hello_timeout(self) -> None:
        if not self.hello and self.state is not CLOSING:
            self.fail(C.E_HELLO_TIMEOUT, f"no HELLO within {self.broker.config.hello_timeout:g} s")

    # -- replies and closing

    def send(self, frame: bytes) -> None:
        """Queue a reply; it is written when the current read is handled."""
        self.box.send(frame, self.broker.to_flush)
        if not self.writable:
            self.replies += 1
            if self.replies >= MAX_REPLIES_PAUSED:
                self._gag()

    def send_error(self, code: str, message: str) -> None:
        self.send(self.broker.error_frame(code, message))

    def fail(self, code: str, message: str) -> None:
        """A framing error: tell the client why, then close (the stream cannot be resynchronized)."""
        if self.state is CLOSING:
            return
        pid, uid, gid = self.peer
        log.warning("closing #%d %r pid=%d uid=%d: %s: %s", self.client_id, self.name, pid, uid, code, message)
        self.close(self.broker.error_frame(code, message))

    def close(self, last: Optional[bytes] = None) -> None:
        """Write what is queued and ``last`` (BYE by default) regardless of
        back-pressure, then close."""
        if self.state is CLOSING or self.transport is None:
            return
        self.state = CLOSING
        box = self.box
        frames = box.take()
        self._tell_drops(frames)
        frames.append(self.broker.bye_frame if last is None else last)
        box.discard()  # routing queues nothing more for it
        self.transport.writelines(frames)
        self.transport.close()

