"""One connection to the broker, as the client sees it: ``ClientProtocol``.

It owns everything that lives as long as the connection: the decoder, flow
control (pause/resume, drained, stuck), the PINGs awaiting their PONG, the
broker's HELLO reply and the keepalive. What outlives a connection is the
owner's (``UnixBus``), which the protocol tells of what concerns it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

import orjson

from . import constants as C
from .errors import BusError, FrameError
from .peer import PeerWatch, working
from .protocol import encode

if TYPE_CHECKING:
    from .unix_client import UnixBus

log = logging.getLogger("decnet.bus.client")

PING, PONG, HELLO, ERR, BYE = C.PING, C.PONG, C.HELLO, C.ERR, C.BYE
PING_FRAME = encode(C.PING)
PONG_FRAME = encode(C.PONG)
BYE_FRAME = encode(C.BYE)
# The send buffer's high-water mark: over it, publish waits for the broker to
# drain it (``drained``).
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024


class BusUnavailable(BusError):
    """No broker answered (flush, or an explicit connect)."""


class ClientProtocol(asyncio.Protocol):
    """One connection to the broker and everything that lives as long as it:
    the decoder, flow control (pause/resume, drained, stuck), the PINGs awaiting
    their PONG, the broker's HELLO reply and the keepalive.

    EVTs go into ``local``, the owner's SubscriptionIndex, by ``impl``'s
    ``client_feed``; what concerns the bus goes to ``owner`` through its
    ``_on_hello``, ``_on_error``, ``_on_slow_consumer`` and ``_on_lost``.
    ``path`` names the broker in log messages. A lost connection fails its own
    PINGs and stops its own keepalive.
    """

    def __init__(self, owner: "UnixBus", local: Any, impl: ModuleType, *, path: str,
                 max_payload: int, ping_interval: float, ping_timeout: float) -> None:
        self.owner = owner
        self.local = local
        self.decoder = impl.FrameDecoder(C.MAX_LEN_FIELD)
        self._feed = impl.client_feed
        self.path = path
        #: The broker's HELLO reply, once it has come.
        self.server: Optional[dict] = None
        #: The largest payload the broker takes: as announced in its HELLO reply;
        #: until then, what the owner last knew.
        self.max_payload = max_payload
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.transport: Optional[asyncio.Transport] = None
        self.paused = False
        #: Paused, and the broker neither read nor worked for a whole window:
        #: publish drops until the send buffer shrinks.
        self.stuck = False
        self._stuck_at = 0
        #: The kernel's view of the broker process (None: not available).
        self.watch: Optional[PeerWatch] = None
        self.lost = False
        self.last_read = time.monotonic()
        self._drained: Optional[asyncio.Future] = None
        self._pongs: deque = deque()
        self._keepalive: Optional[asyncio.Task] = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.watch = PeerWatch.of(transport)
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        try:
            # EVTs go straight to the Subscriptions' queues (compiled); the
            # rest (PONG, HELLO, ERR, PING, BYE) come back here.
            for verb, _, body in self._feed(self.decoder, self.local, data):
                self._control(verb, body)
        except FrameError as error:
            log.error("broker sent a bad frame (%s); reconnecting", error)
            self.transport.abort()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        self.resume_writing()
        self._fail_pongs("the connection to the broker was lost")
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.owner._on_lost(self, exc)

    # -- flow control

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.stuck = False
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def writable(self, window: float, limit: float) -> bool:
        """For a paused connection: wait while the broker drains the send buffer
        or, the kernel says, works. False (stuck) once it has done neither for
        ``window`` seconds, or has read nothing from this connection for
        ``limit``; from then on False at once, until the buffer shrinks."""
        if self.stuck:
            if self.transport.get_write_buffer_size() >= self._stuck_at:
                return False
            self.stuck = False  # it reads again: pace the publisher, do not drop
        if await self.drained(window, limit):
            return True
        self.stuck = True
        self._stuck_at = self.transport.get_write_buffer_size()
        return False

    async def drained(self, window: float, limit: float) -> bool:
        """Wait for the send buffer to fall below its low-water mark. False
        (stuck) if the connection is lost, once ``window`` seconds pass in which
        the buffer did not shrink and the broker did no work, or once ``limit``
        seconds pass in which the buffer did not shrink at all.

        A time window alone would call a broker stuck that routes one large read
        for longer than the window, or waits that long for a CPU on a loaded
        machine: every publish would then drop until the buffer drained. The
        kernel tells that broker from a stopped one (decnet/bus/peer.py)."""
        loop = asyncio.get_running_loop()
        tick = window / 4
        progress = work = loop.time()
        size = self.transport.get_write_buffer_size()
        mark = None
        while self.paused and not self.lost:
            if self._drained is None:
                self._drained = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), tick)
                continue
            except asyncio.TimeoutError:
                pass
            now = loop.time()
            was, size = size, self.transport.get_write_buffer_size()
            if size < was:
                progress = work = now
            elif self.watch is not None:
                # The first sample only marks: a buffer that drains within one
                # tick (the usual case) costs no reading of /proc at all.
                sample = self.watch.sample()
                if sample is None:  # gone: from here on, the buffer alone decides
                    self.watch.close()
                    self.watch = None
                elif mark is not None and working(mark, sample):
                    work = now
                mark = sample
            if now - work >= window or now - progress >= limit:
                return False
        return not self.lost

    def write(self, frame: bytes) -> None:
        self.transport.write(frame)

    def writelines(self, frames: list[bytes]) -> None:
        self.transport.writelines(frames)

    # -- PING/PONG

    async def ping(self, timeout: Optional[float]) -> None:
        """Return once the broker answers a PING sent now (it has processed all
        this connection sent before); BusUnavailable if the connection is lost
        first, TimeoutError after ``timeout``."""
        if self.lost:
            raise BusUnavailable("the connection to the broker was lost")
        waiter = asyncio.get_running_loop().create_future()
        self._pongs.append(waiter)
        self.transport.write(PING_FRAME)
        await asyncio.wait_for(asyncio.shield(waiter), timeout)

    async def _keep_alive(self) -> None:
        """A broker that stops answering PING is treated as gone: drop the connection."""
        while not self.lost:
            await asyncio.sleep(self.ping_interval)
            if self.lost or time.monotonic() - self.last_read < self.ping_interval:
                continue
            try:
                await self.ping(self.ping_timeout)
            except asyncio.TimeoutError:
                log.warning("the broker on %s did not answer PING in %.1f s; reconnecting", self.path, self.ping_timeout)
                self.transport.abort()
                return
            except BusError:
                return

    def _fail_pongs(self, why: str) -> None:
        pongs, self._pongs = self._pongs, deque()
        for waiter in pongs:
            if not waiter.done():
                waiter.set_exception(BusUnavailable(why))
                waiter.exception()  # retrieved here, whether anyone awaits it or not

    async def close(self, why: str) -> None:
        """Say BYE and close; PINGs still awaiting their PONG fail with ``why``."""
        self.write(BYE_FRAME)
        self.transport.close()
        self._fail_pongs(why)
        task = self._keepalive
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- control frames

    def _control(self, verb: str, body: bytes) -> None:
        if verb is PONG:
            if self._pongs:
                waiter = self._pongs.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        elif verb is PING:
            self.transport.write(PONG_FRAME)
        elif verb is HELLO:
            self.server = _object(body)
            limit = self.server.get("max_payload")
            if isinstance(limit, int) and limit >= 0:
                self.max_payload = limit
            self.owner._on_hello(self)
        elif verb is ERR:
            error = _object(body)
            if error.get("code") == C.E_SLOW_CONSUMER:
                lost = error.get("dropped")
                self.owner._on_slow_consumer(lost if type(lost) is int and lost > 0 else 0)
            else:
                self.owner._on_error(error)
        elif verb is BYE:
            log.info("the broker on %s is going away", self.path)


def _object(body: bytes) -> dict:
    """A HELLO or ERR body from the broker as a dict; {} for anything else.
    The broker is trusted, but a broken one must not crash every worker."""
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        log.warning("the broker sent a control frame whose body is not JSON: %r", body[:64])
        return {}
    return value if isinstance(value, dict) else {}
