"""The broker: ``BrokerProtocol`` (one per connection) and ``Broker``, which routes.

One event's path: ``data_received`` feeds the decoder (relay mode, so a PUB
comes out as its ready-made EVT frame); ``relay()`` (compiled) checks the topic,
looks it up in the SubscriptionIndex and appends that one bytes object to each
matching connection's ``Outbox``; when the read is handled, ``Broker.flush``
gives each connection that got anything one ``writelines``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Optional

import orjson

from . import constants as C
from ._compat import ACCELERATED, impl
from .config import BrokerConfig
from .errors import FrameError, TopicError
from .protocol import FrameDecoder, encode

relay = impl.relay
route = impl.route

log = logging.getLogger("decnet.bus.broker")

PUB, SUB, UNSUB, HELLO, PING, PONG, BYE = C.PUB, C.SUB, C.UNSUB, C.HELLO, C.PING, C.PONG, C.BYE
PONG_FRAME = encode(C.PONG)
BYE_FRAME = encode(C.BYE)
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
_PEERCRED = struct.Struct("3i")


def error_frame(code: str, message: str) -> bytes:
    return encode(C.ERR, None, orjson.dumps({"code": code, "message": message}))


class BrokerProtocol(asyncio.Protocol):
    """One client connection: handshake, requests, and its bounded outbox.

    The outbox (``box``, the hot path's ``Outbox``) is what the index holds for
    this connection: routing appends to it without calling back into Python.
    """

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.decoder = FrameDecoder(broker.max_payload, relay=True)
        self.box = impl.Outbox(broker.stats, broker.queue_limit, broker.dirty, broker.stall_at)
        self.box.conn = self  # the broker's way back from a dirty outbox
        self.stalled = False  # not read for a moment: a subscriber it feeds is behind
        self.gagged = False  # not read until it reads: too many replies wait for it
        self.replies = 0  # replies queued since its transport paused
        self.said_bye = False
        self.told_dropped = 0  # drops this client has been told of (ERR slow_consumer)
        self.wrote = False  # anything written yet (the HELLO reply must be first)
        self.transport: Optional[asyncio.Transport] = None
        self.client_id = 0
        self.hello = False
        self.name = "?"
        self.echo = True
        self.peer = (0, -1, -1)  # pid, uid, gid
        self.patterns: set[str] = set()
        self._hello_timer: Optional[asyncio.TimerHandle] = None

    @property
    def closing(self) -> bool:
        return self.box.closing

    @property
    def dropped(self) -> int:
        return self.box.dropped

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.peer = _peercred(transport)
        self.broker.accept(self)

    def data_received(self, data: bytes) -> None:
        self.handle(data)

    def handle(self, data: bytes = b"") -> None:
        """Feed ``data`` to the decoder and act on the whole frames it holds."""
        broker, box, decoder = self.broker, self.box, self.decoder
        published = broker.stats.published
        try:
            if data:
                decoder.feed(data)
            while True:
                # relay() routes every valid PUB in C and hands back anything else.
                frame = relay(decoder, broker.index, box, self.echo, broker.stats) if self.hello else next(decoder, None)
                if frame is None:
                    break
                self._request(*frame)
                if box.closing:  # BYE, or a request that closed us: nothing after it counts
                    break
                if self.gagged:  # the rest waits in the decoder until it reads (resume_writing)
                    break
        except FrameError as error:
            self.fail(error.code, str(error))
        if broker.stats.pressure:
            broker.stats.pressure = False
            # Only a publisher is held: a reply that filled the reader's own queue holds nobody.
            if broker.stats.published != published:
                self.stall()
        broker.flush()

    def stall(self) -> None:
        """Stop reading this publisher for at most ``max_stall`` seconds: a
        subscriber it feeds is past 75% of its queue but reading (NATS's
        stalledWait, bounded the same way). It trades a few milliseconds of the
        publisher's time for events the slow reader would otherwise lose."""
        if self.stalled or self.box.closing or not self.broker.max_stall:
            return
        self.stalled = True
        self.broker.stalls += 1
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(self.broker.max_stall, self.unstall)

    def unstall(self) -> None:
        self.stalled = False
        self.resume()

    def resume(self) -> None:
        """Read again unless stalled, gagged or closing, starting with the
        frames a gag left in the decoder (no new data may come to push them:
        the client may be waiting for their answers)."""
        if not (self.stalled or self.gagged or self.box.closing):
            self.transport.resume_reading()
            self.handle()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self.box.discard()
        self.broker.release(self, exc)
        self.box.conn = None  # break the cycle

    def pause_writing(self) -> None:
        # Its requests are still read (see MAX_REPLIES_PAUSED): stopping here
        # would starve a slow reader for good, since each resume refills the
        # transport and pauses again before the loop gets to read.
        self.box.paused = True
        self.replies = 0

    def resume_writing(self) -> None:
        self.box.paused = False
        if self.gagged:
            self.gagged = False
            self.resume()
        self.drain()

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
            self.send(PONG_FRAME)
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
        self.send(encode(HELLO, None, orjson.dumps(self.broker.hello_reply(self))))
        pid, uid, gid = self.peer
        log.info("connect #%d %r pid=%d uid=%d gid=%d (hello pid=%s)", self.client_id, self.name, pid, uid, gid, hello.get("pid"))

    def hello_timeout(self) -> None:
        if not self.hello and not self.closing:
            self.fail(C.E_HELLO_TIMEOUT, f"no HELLO within {self.broker.hello_timeout:g} s")

    # -- the outbox

    def send(self, frame: bytes) -> None:
        """Queue ``frame``; it is written when the current read is handled."""
        self.box.send(frame)
        if self.box.paused:
            self.replies += 1
            if self.replies >= MAX_REPLIES_PAUSED and not self.gagged:
                self.gagged = True
                self.transport.pause_reading()

    def drain(self) -> None:
        """Hand the outbox to the transport until it is empty or the transport pushes back."""
        box = self.box
        box.dirty = False
        while box.pending and not box.paused and not box.closing:
            # Usually all of it in one writelines (uvloop: one writev); after a
            # pause, in slices, so a slow reader holds little beyond its queue.
            frames = box.take(DRAIN_SLICE)
            self.tell_drops(frames)
            self.transport.writelines(frames)
        if box.dropped != self.told_dropped and not box.paused and not box.closing:
            self.transport.write(self.slow_consumer_frame())  # all it was sent was dropped

    def tell_drops(self, frames: list) -> None:
        """Put ERR slow_consumer in front of ``frames`` if events were dropped
        since the client was last told. The dropped events were the oldest
        queued, so that is where they would have been: the client learns of
        the loss in place (after the HELLO reply, which always comes first)."""
        if self.box.dropped != self.told_dropped:
            first = 0 if self.wrote else min(1, len(frames))
            frames.insert(first, self.slow_consumer_frame())
        self.wrote = True

    def slow_consumer_frame(self) -> bytes:
        lost, self.told_dropped = self.box.dropped - self.told_dropped, self.box.dropped
        return encode(C.ERR, None, orjson.dumps({
            "code": C.E_SLOW_CONSUMER,
            "message": f"{lost} events dropped: this connection's queue passed --queue-limit ({self.broker.queue_limit} bytes)",
            "dropped": lost,
        }))

    def send_error(self, code: str, message: str) -> None:
        self.send(error_frame(code, message))

    def fail(self, code: str, message: str) -> None:
        """A framing error: tell the client why, then close (the stream cannot be resynchronized)."""
        if self.closing:
            return
        pid, uid, gid = self.peer
        log.warning("closing #%d %r pid=%d uid=%d: %s: %s", self.client_id, self.name, pid, uid, code, message)
        self.close(error_frame(code, message))

    def close(self, last: bytes = BYE_FRAME) -> None:
        """Write what is queued and ``last`` (regardless of back-pressure), then close."""
        box = self.box
        if box.closing or self.transport is None:
            return
        frames = box.take()
        self.tell_drops(frames)
        frames.append(last)
        self.transport.writelines(frames)
        box.closing = True
        self.transport.close()


class Broker:
    """Routes events between connections and keeps the counters of the heartbeat."""

    def __init__(self, config: BrokerConfig, *, loop_name: str = "asyncio", version: str = "") -> None:
        self.config = config
        self.max_payload = config.max_payload
        self.queue_limit = queue_limit = config.queue_limit
        self.max_stall = max_stall = config.max_stall
        self.hello_timeout = config.hello_timeout
        # Past this, an outbox that is still being drained asks its publishers to wait.
        self.stall_at = queue_limit * 3 // 4 if max_stall > 0 else 0
        self.stalls = 0
        self.max_subscriptions = config.max_subscriptions
        self.max_connections = config.max_connections
        self.loop_name = loop_name
        self.version = version
        self.index = impl.SubscriptionIndex()  # pattern -> the subscribers' Outboxes
        self.stats = impl.RouteStats()
        self.connections: set[BrokerProtocol] = set()
        self.dirty: list = []  # Outboxes that got frames since the last flush
        self.started = time.monotonic()
        self.next_id = 0
        self.subscriptions = 0

    # -- connections

    def accept(self, conn: BrokerProtocol) -> None:
        self.next_id += 1
        conn.client_id = self.next_id
        if len(self.connections) >= self.max_connections:
            conn.fail(C.E_TOO_MANY_CONNECTIONS, f"the broker holds its limit of {self.max_connections} connections")
            return
        self.connections.add(conn)
        conn._hello_timer = asyncio.get_running_loop().call_later(self.hello_timeout, conn.hello_timeout)

    def release(self, conn: BrokerProtocol, exc: Optional[Exception]) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        for pattern in conn.patterns:
            self.index.remove(pattern, conn.box)
        self.subscriptions -= len(conn.patterns)
        conn.patterns.clear()
        pid, uid, gid = conn.peer
        # A client that said BYE may hang up before our BYE reaches it: still a clean close.
        how = f"lost: {exc}" if exc and not conn.said_bye else "closed"
        if conn.hello:
            log.info("disconnect #%d %r pid=%d uid=%d gid=%d %s (dropped %d)", conn.client_id, conn.name, pid, uid, gid, how, conn.dropped)
        else:
            log.info("disconnect #%d pid=%d uid=%d gid=%d before HELLO, %s", conn.client_id, pid, uid, gid, how)

    def hello_reply(self, conn: BrokerProtocol) -> dict:
        return {
            "v": C.PROTOCOL_VERSION,
            "server": "decnet-bus",
            "version": self.version,
            "max_payload": self.max_payload,
            "client_id": conn.client_id,
        }

    # -- routing

    def refuse(self, conn: BrokerProtocol, topic: Optional[str]) -> None:
        """ERR for a PUB that relay() would not route: no topic, a bad one, or a reserved one.

        Valid PUBs never come here: relay() routes them without leaving C."""
        if _checked(conn, impl.check_topic, topic, C.E_BAD_TOPIC, "PUB needs a topic"):
            conn.send_error(C.E_RESERVED_TOPIC, f"topic {topic!r} is reserved for the broker ({C.RESERVED_PREFIX}*)")

    def emit(self, topic: str, payload: dict) -> None:
        """Publish as the broker itself (the heartbeat)."""
        self.stats.routed += route(self.index, None, True, topic, encode(C.EVT, topic, orjson.dumps(payload)))
        self.stats.pressure = False  # nobody to stall: the broker itself published
        self.flush()

    def flush(self) -> None:
        """One write per connection that got anything since the last flush."""
        dirty = self.dirty
        if dirty:
            boxes = list(dirty)
            dirty.clear()  # the Outboxes hold this very list: clear it, never replace it
            for box in boxes:
                if box.conn is not None:
                    box.conn.drain()

    def subscribe(self, conn: BrokerProtocol, pattern: Optional[str]) -> None:
        if not _checked(conn, impl.check_pattern, pattern, C.E_BAD_PATTERN, "SUB needs a pattern"):
            return
        if pattern in conn.patterns:
            return
        if len(conn.patterns) >= self.max_subscriptions:
            conn.send_error(C.E_TOO_MANY_SUBSCRIPTIONS, f"a connection may hold at most {self.max_subscriptions} subscriptions")
            return
        conn.patterns.add(pattern)
        self.index.add(pattern, conn.box)
        self.subscriptions += 1

    def unsubscribe(self, conn: BrokerProtocol, pattern: Optional[str]) -> None:
        if not _checked(conn, impl.check_pattern, pattern, C.E_BAD_PATTERN, "UNSUB needs a pattern"):
            return
        if pattern in conn.patterns:
            conn.patterns.discard(pattern)
            self.index.remove(pattern, conn.box)
            self.subscriptions -= 1

    # -- life cycle

    def health(self) -> dict:
        return {
            "v": C.PROTOCOL_VERSION,
            "ts": time.time(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "loop": self.loop_name,
            "accelerated": ACCELERATED,
            "version": self.version,
            "connections": len(self.connections),
            "subscriptions": self.subscriptions,
            "published": self.stats.published,
            "routed": self.stats.routed,
            "delivered": self.stats.routed - self.stats.dropped,
            "dropped": self.stats.dropped,
            "stalls": self.stalls,
            "max_payload": self.max_payload,
            "queue_limit": self.queue_limit,
        }

    async def shutdown(self, timeout: float = 2.0) -> None:
        """BYE to every client, let the transports flush, then close them."""
        conns = list(self.connections)
        for conn in conns:
            conn.close(BYE_FRAME)
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()


def _checked(conn: BrokerProtocol, check, value: Optional[str], code: str, missing: str) -> bool:
    """Run ``check`` on a request's argument; on failure ERR the client (the connection stays)."""
    try:
        check(value)
    except TopicError as error:
        conn.send_error(code, str(error))
        return False
    except TypeError:  # no argument on the line
        conn.send_error(code, missing)
        return False
    return True


def _peercred(transport: asyncio.BaseTransport) -> tuple:
    sock = transport.get_extra_info("socket")
    try:
        return _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except (OSError, AttributeError):
        return (0, -1, -1)
