"""The client of the UNIX-socket broker: ``ClientProtocol`` and ``UnixBus``.

``UnixBus`` connects lazily, pipelines HELLO/SUB/PUB without waiting for
answers, reconnects by itself with capped, jittered backoff, and re-sends HELLO
and every live pattern; a Subscription then receives a ``Gap``. Flow control
(pause/resume from the transport) lives in ``ClientProtocol`` alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections import deque
from typing import Any, Optional

import orjson

from . import constants as C
from .base import Bus, Subscription
from .config import socket_path
from .errors import BusError, FrameError
from ._compat import impl
from .protocol import FrameDecoder, encode

log = logging.getLogger("decnet.bus.client")

PING, PONG, HELLO, ERR, BYE = C.PING, C.PONG, C.HELLO, C.ERR, C.BYE
PING_FRAME = encode(C.PING)
PONG_FRAME = encode(C.PONG)
BYE_FRAME = encode(C.BYE)
# The send buffer's high-water mark: over it, publish waits (at most
# PUBLISH_WAIT) for the broker to drain it.
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
client_feed = impl.client_feed
BACKOFF_MIN = 0.02
BACKOFF_MAX = 0.5
CONNECT_TIMEOUT = 0.5


class BusUnavailable(BusError):
    """No broker answered (flush, or an explicit connect)."""


class ClientProtocol(asyncio.Protocol):
    """One connection to the broker: decodes what arrives, and holds flow control."""

    def __init__(self, bus: "UnixBus") -> None:
        self.bus = bus
        self.decoder = FrameDecoder(C.MAX_LEN_FIELD)
        self.transport: Optional[asyncio.Transport] = None
        self.paused = False
        self.lost = False
        self.last_read = time.monotonic()
        self._drained: Optional[asyncio.Future] = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        try:
            # EVTs go straight to the Subscriptions' queues (compiled); the
            # rest (PONG, HELLO, ERR, PING, BYE) come back here.
            for verb, _, body in client_feed(self.decoder, self.bus._local, data):
                self.bus._control(self, verb, body)
        except FrameError as error:
            log.error("broker sent a bad frame (%s); reconnecting", error)
            self.transport.abort()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        self.resume_writing()
        self.bus._connection_lost(self, exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.bus._stuck = False

    async def drained(self, window: float) -> bool:
        """Wait for the send buffer to fall below its low-water mark for as long as
        the broker keeps reading; False (stuck) once a whole ``window`` passes
        without the buffer shrinking, or if the connection is lost."""
        while self.paused and not self.lost:
            before = self.transport.get_write_buffer_size()
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), window)
            except asyncio.TimeoutError:
                if self.lost or self.transport.get_write_buffer_size() >= before:
                    return False
        return not self.lost

    def write(self, frame: bytes) -> None:
        self.transport.write(frame)


class UnixBus(Bus):
    """The bus of a DECNET worker: a client of the broker on the UNIX socket.

    ``path`` defaults to ``$DECNET_BUS_SOCKET`` or the standard location;
    ``name`` is what the broker logs for this client; ``echo=False`` asks the
    broker not to send this client its own events.
    """

    def __init__(
        self,
        path: Optional[str | os.PathLike] = None,
        *,
        name: Optional[str] = None,
        echo: bool = True,
        publish_wait: float = C.PUBLISH_WAIT,
        ping_interval: float = 5.0,
        ping_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.path = socket_path(path)
        self.name = name or os.path.basename(sys.argv[0] or "python")
        self.echo = echo
        self.publish_wait = publish_wait
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: The broker's HELLO reply on the current connection, or None.
        self.server: Optional[dict] = None
        self.max_payload = C.DEFAULT_MAX_PAYLOAD
        self.published = 0
        self.dropped = 0
        self.connects = 0
        self.errors = 0
        #: Events the broker dropped for this client because it read too slowly
        #: (told by ERR slow_consumer; each live Subscription got a Gap).
        self.broker_dropped = 0
        self._slow_logged = -1e9
        self.last_error: Optional[dict] = None
        self._proto: Optional[ClientProtocol] = None
        self._pongs: deque = deque()
        self._connector: Optional[asyncio.Task] = None
        self._attempt: Optional[asyncio.Future] = None
        self._keepalive: Optional[asyncio.Task] = None
        self._tasks: set[asyncio.Task] = set()
        self._delay = BACKOFF_MIN
        self._stuck = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def connected(self) -> bool:
        return self._proto is not None

    # -- the public API

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect now rather than lazily; BusUnavailable if no broker answers in time."""
        if not await self._ready(timeout):
            raise BusUnavailable(self._unavailable())

    async def publish(self, topic: str, payload: Any = None) -> None:
        body = self._encode(topic, payload, self.max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        proto = self._proto
        if proto is None:
            if not await self._ready(self.publish_wait):
                await self._drop()
                return
            proto = self._proto
        if proto.transport.is_closing():  # lost; connection_lost has not run yet
            await self._drop()
            return
        if proto.paused:
            # A broker that is behind but reading paces the publisher; one that
            # reads nothing for publish_wait is stuck: drop until it drains.
            if self._stuck or not await proto.drained(self.publish_wait) or proto is not self._proto:
                self._stuck = True
                await self._drop()
                return
        proto.write(encode(C.PUB, topic, body))
        self.published += 1

    async def _drop(self) -> None:
        self.dropped += 1
        # Let the loop run: a tight publish loop that only ever drops would
        # otherwise starve the very I/O (reconnect, drain) that ends the drops.
        await asyncio.sleep(0)

    async def flush(self, timeout: Optional[float] = 5.0) -> None:
        if not await self._ready(CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)):
            raise BusUnavailable(self._unavailable())
        await self._ping(timeout)

    async def close(self) -> None:
        if self._closed:
            return
        await super().close()
        tasks = [t for t in (self._connector, self._keepalive, *self._tasks) if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.write(BYE_FRAME)
            proto.transport.close()
        self._fail_pongs("the bus was closed")

    def stats(self) -> dict:
        return {
            **super().stats(),
            "connected": self.connected,
            "published": self.published,
            "dropped": self.dropped,
            "connects": self.connects,
            "errors": self.errors,
            "received_dropped": sum(s.dropped for s in self._subscriptions),
            "broker_dropped": self.broker_dropped,
        }

    # -- subscriptions

    async def _attach(self, sub: Subscription) -> None:
        if self._register(sub) and self._proto is not None:
            self._proto.write(encode(C.SUB, sub.pattern))
        if await self._ready(CONNECT_TIMEOUT):
            try:
                await self._ping(self.ping_timeout)
                return
            except (BusUnavailable, asyncio.TimeoutError):
                pass
        # The broker is away: the subscription goes live on (re)connect, and
        # the reader learns with a Gap that it may have missed events.
        sub._gap_reason = "connect"

    async def _detach(self, sub: Subscription) -> None:
        if self._unregister(sub) and self._proto is not None and not self._closed:
            self._proto.write(encode(C.UNSUB, sub.pattern))

    # -- connection management

    async def _ready(self, timeout: float) -> bool:
        """Connected, or connected within ``timeout`` by an attempt already under way.

        While the connector sleeps between attempts this returns at once: a
        broker that is down costs a publisher nothing."""
        if self._proto is not None:
            return True
        if self._closed:
            return False
        self._start_connector()
        attempt = self._attempt
        if attempt is not None:
            try:
                await asyncio.wait_for(asyncio.shield(attempt), timeout)
            except asyncio.TimeoutError:
                pass
        return self._proto is not None

    def _start_connector(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._rebind(loop)
        if self._connector is None or self._connector.done():
            self._attempt = loop.create_future()
            self._connector = loop.create_task(self._connect_loop())

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use, or use from a new event loop (the old one is gone): start afresh."""
        if self._loop is not None and not self._loop.is_closed() and self._loop.is_running():
            raise BusError("this bus belongs to another running event loop")
        self._loop = loop
        self._proto = None
        self._connector = None
        self._keepalive = None
        self._pongs.clear()

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # Until there is a connection: a connection lost while this task is
        # still winding down finds it here rather than starting a second one.
        while not self._closed and self._proto is None:
            if self._attempt is None or self._attempt.done():
                self._attempt = loop.create_future()
            try:
                await asyncio.wait_for(self._open(), CONNECT_TIMEOUT)
                opened = True
            except (OSError, asyncio.TimeoutError) as error:
                log.debug("no broker on %s: %s", self.path, error)
                opened = False
            attempt, self._attempt = self._attempt, None
            if not attempt.done():
                attempt.set_result(opened)
            if self._proto is None and not self._closed:
                # The delay grows until a broker accepts us (its HELLO reply
                # resets it), so one that accepts and then hangs up is not stormed.
                await asyncio.sleep(self._delay * random.uniform(0.5, 1.5))
                self._delay = min(self._delay * 2, BACKOFF_MAX)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_unix_connection(lambda: ClientProtocol(self), str(self.path))
        hello = {"v": C.PROTOCOL_VERSION, "name": self.name, "pid": os.getpid()}
        if not self.echo:
            hello["echo"] = False
        frames = [encode(C.HELLO, None, orjson.dumps(hello))]
        frames += [encode(C.SUB, pattern) for pattern in self._pattern_refs]
        proto.transport.writelines(frames)
        self._proto = proto
        self._stuck = False
        self.connects += 1
        if self.connects > 1:
            log.info("reconnected to the broker on %s", self.path)
        self._keepalive = loop.create_task(self._keep_alive(proto))
        # Subscriptions that may have missed events learn it once the broker
        # has their SUBs, so a resync they do then misses nothing.
        if any(sub._gap_reason for sub in self._subscriptions):
            task = loop.create_task(self._announce_gaps())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _announce_gaps(self) -> None:
        try:
            await self._ping(self.ping_timeout)
        except (BusError, asyncio.TimeoutError):
            return  # lost again, or stuck (the keepalive will drop it): the next connection announces them
        for sub in list(self._subscriptions):
            if sub._gap_reason and sub.active:
                sub.put_gap(sub._gap_reason)
                sub._gap_reason = None

    async def _keep_alive(self, proto: ClientProtocol) -> None:
        """A broker that stops answering PING is treated as gone: reconnect."""
        while proto is self._proto:
            await asyncio.sleep(self.ping_interval)
            if proto is not self._proto or time.monotonic() - proto.last_read < self.ping_interval:
                continue
            try:
                await self._ping(self.ping_timeout)
            except asyncio.TimeoutError:
                log.warning("the broker on %s did not answer PING in %.1f s; reconnecting", self.path, self.ping_timeout)
                proto.transport.abort()
                return
            except BusError:
                return

    async def _ping(self, timeout: Optional[float]) -> None:
        proto = self._proto
        if proto is None:
            raise BusUnavailable(self._unavailable())
        waiter = asyncio.get_running_loop().create_future()
        self._pongs.append(waiter)
        proto.write(PING_FRAME)
        await asyncio.wait_for(asyncio.shield(waiter), timeout)

    def _control(self, proto: ClientProtocol, verb: str, body: bytes) -> None:
        if verb is PONG:
            if self._pongs:
                waiter = self._pongs.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        elif verb is PING:
            proto.write(PONG_FRAME)
        elif verb is HELLO:
            self.server = _object(body)
            limit = self.server.get("max_payload")
            if isinstance(limit, int) and limit >= 0:
                self.max_payload = limit
            self._delay = BACKOFF_MIN
        elif verb is ERR:
            error = _object(body)
            if error.get("code") == C.E_SLOW_CONSUMER:
                self._slow_consumer(error)
                return
            self.errors += 1
            self.last_error = error
            log.warning("broker error: %s: %s", error.get("code"), error.get("message"))
        elif verb is BYE:
            log.info("the broker on %s is going away", self.path)

    def _slow_consumer(self, error: dict) -> None:
        # The broker dropped events it had queued for us (we read too slowly):
        # every live Subscription may have missed some, at this point.
        lost = error.get("dropped")
        lost = lost if type(lost) is int and lost > 0 else 0
        self.broker_dropped += lost
        for sub in self._subscriptions:
            if sub.active:
                sub.put_gap("slow_consumer")
        now = time.monotonic()
        if now - self._slow_logged >= 10.0:  # a consumer that stays slow would flood the log
            self._slow_logged = now
            log.warning("the broker dropped %d events queued for this client (%d so far): it reads too slowly",
                        lost, self.broker_dropped)

    def _connection_lost(self, proto: ClientProtocol, exc: Optional[Exception]) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self.server = None
        self._fail_pongs("the connection to the broker was lost")
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if not self._closed:
            log.warning("lost the broker on %s (%s); reconnecting", self.path, exc or "closed")
            for sub in self._subscriptions:
                sub._gap_reason = sub._gap_reason or "reconnect"  # never live yet: still "connect"
            self._start_connector()

    def _fail_pongs(self, why: str) -> None:
        pongs, self._pongs = self._pongs, deque()
        for waiter in pongs:
            if not waiter.done():
                waiter.set_exception(BusUnavailable(why))
                waiter.exception()  # retrieved here, whether anyone awaits it or not

    def _unavailable(self) -> str:
        return f"no broker on {self.path}: start one with `decnet bus`, or set DECNET_BUS_SOCKET"


def _object(body: bytes) -> dict:
    """A HELLO or ERR body from the broker as a dict; {} for anything else.
    The broker is trusted, but a broken one must not crash every worker."""
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        log.warning("the broker sent a control frame whose body is not JSON: %r", body[:64])
        return {}
    return value if isinstance(value, dict) else {}
