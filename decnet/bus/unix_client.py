"""The client of the UNIX-socket broker: ``UnixBus``.

``UnixBus`` connects lazily, pipelines HELLO/SUB/PUB without waiting for
answers, reconnects by itself with capped, jittered backoff, and re-sends HELLO
and every live pattern; a Subscription then receives a ``Gap``. It keeps what
outlives a connection (subscriptions, counters, backoff); each connection,
a ``ClientProtocol``, keeps its own state and flow control.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from types import ModuleType
from typing import Any, Optional

import orjson

from . import constants as C
from .base import Bus, Subscription
from .config import socket_choice
from .client_protocol import BusUnavailable, ClientProtocol
from .errors import BusError
from .protocol import encode
from .unreachable import unreachable

log = logging.getLogger("decnet.bus.client")

BACKOFF_MIN = 0.02
BACKOFF_MAX = 0.5
CONNECT_TIMEOUT = 0.5


class UnixBus(Bus):
    """The bus of a DECNET worker: a client of the broker on the UNIX socket.

    ``path`` defaults to ``$DECNET_BUS_SOCKET`` or the standard location;
    ``name`` is what the broker logs for this client; ``echo=False`` asks the
    broker not to send this client its own events. ``impl`` is the hot-path
    implementation (None: the selected one).
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
        impl: Optional[ModuleType] = None,
    ) -> None:
        # self._impl decodes and delivers into Subscriptions; frames are
        # encoded by the module-level encode (the twins' frames are the same
        # bytes, and a global is the cheapest call on the publish path).
        super().__init__(impl, name=name)
        self.path, self._source = socket_choice(path)
        self._echo = echo
        self._publish_wait = publish_wait
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._slow_logged = -1e9
        # Why the last connection attempt failed (None: it did not, or none yet):
        # what BusUnavailable explains.
        self._failure: Optional[BaseException] = None
        self._refusal_told = False
        self._proto: Optional[ClientProtocol] = None
        self._connector: Optional[asyncio.Task] = None
        self._attempt: Optional[asyncio.Future] = None
        self._tasks: set[asyncio.Task] = set()
        self._delay = BACKOFF_MIN
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def connected(self) -> bool:
        return self._proto is not None

    @property
    def server(self) -> Optional[dict]:
        proto = self._proto
        return None if proto is None else proto.server

    @property
    def max_payload(self) -> int:
        proto = self._proto
        return self._max_payload if proto is None else proto.max_payload

    # -- the public API

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect now rather than lazily; BusUnavailable if no broker answers in time."""
        if not await self._ready(timeout):
            raise BusUnavailable(self._unavailable())

    async def publish(self, topic: str, payload: Any = None) -> None:
        proto = self._proto
        body = self._encode(topic, payload, self._max_payload if proto is None else proto.max_payload)
        # The usual case inline: publish is the hot path, and an extra
        # coroutine per event shows. Anything else takes _send's way.
        if self._closed or proto is None or proto.paused or proto.transport.is_closing():
            await self._send(proto, topic, body)
            return
        proto.write(encode(C.PUB, topic, body))
        self.published += 1

    async def publish_raw(self, topic: str, body: bytes) -> None:
        proto = self._proto
        self._check_raw(topic, body, self._max_payload if proto is None else proto.max_payload)
        await self._send(proto, topic, body)

    async def _send(self, proto: Optional[ClientProtocol], topic: str, body: bytes) -> None:
        """``publish`` after its checks: write the PUB, or drop and count it."""
        if self._closed:
            raise BusError("the bus is closed")
        if proto is None:
            if not await self._ready(self._publish_wait):
                await self._drop()
                return
            proto = self._proto
        if proto.transport.is_closing():  # lost; connection_lost has not run yet
            await self._drop()
            return
        # A broker that is behind but reading or working paces the publisher;
        # one that neither reads nor works for publish_wait is stuck: drop
        # until it reads again.
        if proto.paused and (not await proto.writable(self._publish_wait, self._ping_timeout) or proto is not self._proto):
            await self._drop()
            return
        proto.write(encode(C.PUB, topic, body))
        self.published += 1

    async def _drop(self) -> None:
        self.dropped += 1
        self._warn_if_refused()
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
        tasks = [t for t in (self._connector, *self._tasks) if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proto, self._proto = self._proto, None
        if proto is not None:
            await proto.close("the bus was closed")

    # -- subscriptions

    async def _attach(self, sub: Subscription) -> None:
        new = self._register(sub)
        if new and self._proto is not None:
            self._proto.writelines([encode(C.SUB, pattern) for pattern in new])
        if await self._ready(CONNECT_TIMEOUT):
            try:
                await self._ping(self._ping_timeout)
                return
            except (BusUnavailable, asyncio.TimeoutError):
                pass
        # The broker is away: the subscription goes live on (re)connect, and
        # the reader learns with a Gap that it may have missed events.
        self._warn_if_refused()
        sub.missed("connect")

    def _warn_if_refused(self) -> None:
        """A worker that publishes or subscribes lazily hears of a refused
        socket once: unlike an absent broker, it does not go away by waiting.
        (connect and flush raise it instead.)"""
        if isinstance(self._failure, PermissionError) and not self._refusal_told:
            self._refusal_told = True
            log.warning("%s", self._unavailable())

    async def _detach(self, sub: Subscription) -> None:
        gone = self._unregister(sub)
        if gone and self._proto is not None and not self._closed:
            self._proto.writelines([encode(C.UNSUB, pattern) for pattern in gone])

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
        """First use, or use from a new event loop (the old one is gone, and
        with it the old connection): start afresh."""
        if self._loop is not None and not self._loop.is_closed() and self._loop.is_running():
            raise BusError("this bus belongs to another running event loop")
        self._loop = loop
        self._proto = None
        self._connector = None

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
                self._failure, self._refusal_told = None, False
            except (OSError, asyncio.TimeoutError) as error:
                if asyncio.current_task().cancelling():
                    # wait_for hands back the attempt's own failure when a
                    # cancel arrives as it fails: the cancel must still end us.
                    raise asyncio.CancelledError from error
                log.debug("no broker on %s: %s", self.path, error)
                self._failure = error
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
        path = str(self.path)
        _, proto = await loop.create_unix_connection(
            lambda: ClientProtocol(self, self._local, self._impl, path=path, max_payload=self._max_payload,
                                   ping_interval=self._ping_interval, ping_timeout=self._ping_timeout),
            path)
        hello = {"v": C.PROTOCOL_VERSION, "name": self.name, "pid": os.getpid()}
        if not self._echo:
            hello["echo"] = False
        proto.writelines([encode(C.HELLO, None, orjson.dumps(hello))]
                         + [encode(C.SUB, pattern) for pattern in self._pattern_refs])
        self._proto = proto
        self.connects += 1
        if self.connects > 1:
            log.info("reconnected to the broker on %s", self.path)
        # Subscriptions that may have missed events learn it once the broker
        # has their SUBs, so a resync they do then misses nothing.
        if any(sub.pending_gap for sub in self._subscriptions):
            task = loop.create_task(self._announce_gaps(proto))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _announce_gaps(self, proto: ClientProtocol) -> None:
        try:
            await proto.ping(self._ping_timeout)
        except (BusError, asyncio.TimeoutError):
            return  # lost again, or stuck (the keepalive will drop it): the next connection announces them
        for sub in list(self._subscriptions):
            sub.live_again()

    async def _ping(self, timeout: Optional[float]) -> None:
        proto = self._proto
        if proto is None:
            raise BusUnavailable(self._unavailable())
        await proto.ping(timeout)

    def _unavailable(self) -> str:
        return unreachable(self.path, self._failure, self._source)

    # -- what ClientProtocol tells its owner

    def _on_hello(self, proto: ClientProtocol) -> None:
        """The broker answered HELLO: it accepted us."""
        self._delay = BACKOFF_MIN

    def _on_error(self, error: dict) -> None:
        """An ERR from the broker (other than slow_consumer)."""
        self.errors += 1
        self.last_error = error
        log.warning("broker error: %s: %s", error.get("code"), error.get("message"))

    def _on_slow_consumer(self, lost: int) -> None:
        """The broker dropped ``lost`` events it had queued for us (we read too
        slowly): every live Subscription may have missed some, at this point."""
        self.broker_dropped += lost
        for sub in self._subscriptions:
            if sub.active:
                sub.put_gap("slow_consumer")
        now = time.monotonic()
        if now - self._slow_logged >= 10.0:  # a consumer that stays slow would flood the log
            self._slow_logged = now
            log.warning("the broker dropped %d events queued for this client (%d so far): it reads too slowly",
                        lost, self.broker_dropped)

    def _on_lost(self, proto: ClientProtocol, exc: Optional[Exception]) -> None:
        """A connection ended (its own state went with it): reconnect, and owe
        every Subscription a Gap."""
        if proto is not self._proto:
            return
        self._proto = None
        # The last broker's limit stands until the next one announces its own,
        # so a reconnecting client does not send what it knows will be refused.
        self._max_payload = proto.max_payload
        if not self._closed:
            log.warning("lost the broker on %s (%s); reconnecting", self.path, exc or "closed")
            for sub in self._subscriptions:
                sub.missed("reconnect")
            self._start_connector()
