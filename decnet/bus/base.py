"""The interface every bus offers: ``Bus``, ``Subscription``, ``Event`` and ``Gap``.

``UnixBus`` (the real client), ``FakeBus`` and ``NullBus`` all derive from
``Bus``, so a worker written against one runs against the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Optional, Union

import orjson

from . import constants as C
from ._compat import impl
from .errors import BusError, TopicError
from .topics import check_pattern, check_topic


class Event:
    """One event as a subscriber sees it.

    ``payload`` is decoded from ``raw`` (the JSON bytes the publisher sent) on
    first access, and the one Event is shared by every matching Subscription
    of a process: treat the payload as read-only.
    """

    __slots__ = ("topic", "raw", "_payload")
    gap = False

    def __init__(self, topic: str, raw: bytes) -> None:
        self.topic = topic
        self.raw = raw
        self._payload: Any = _UNDECODED

    @property
    def payload(self) -> Any:
        """The decoded JSON payload (None for an empty body)."""
        if self._payload is _UNDECODED:
            self._payload = orjson.loads(self.raw) if self.raw else None
        return self._payload

    def __repr__(self) -> str:
        return f"Event({self.topic!r}, {self.raw[:60]!r})"


_UNDECODED = object()


class Gap:
    """Events may have been lost here: resynchronize from the database.

    A Subscription yields one where its stream has a hole: ``reason`` is
    ``"overflow"`` (its own queue dropped ``lost`` events, oldest first),
    ``"reconnect"`` (the connection to the broker was lost and is back) or
    ``"connect"`` (it was entered while the broker was unreachable and is now
    live). It comes after the subscription is live again, so a resync done on
    receiving it misses nothing.
    """

    __slots__ = ("reason", "lost")
    gap = True
    topic = None
    payload = None

    def __init__(self, reason: str, lost: Optional[int] = None) -> None:
        self.reason = reason
        self.lost = lost

    def __repr__(self) -> str:
        return f"Gap({self.reason!r}, lost={self.lost})"


Item = Union[Event, Gap]


class Subscription:
    """Events matching one pattern: an async context manager and an async iterator.

    ``async with bus.subscribe("decky.*.state") as sub: async for evt in sub: ...``
    Once inside ``async with``, the broker has the subscription. Iteration ends
    when the subscription or its bus is closed. The queue holds ``maxsize``
    events; when full, the oldest are dropped (``dropped`` counts them) and a
    ``Gap`` tells the reader where, unless ``gaps=False``.
    """

    def __init__(self, bus: "Bus", pattern: str, maxsize: int = C.DEFAULT_SUBSCRIPTION_QUEUE, gaps: bool = True) -> None:
        check_pattern(pattern)
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.pattern = pattern
        self.maxsize = maxsize
        self.gaps_enabled = gaps
        #: Events dropped by this Subscription's full queue.
        self.dropped = 0
        #: Gaps this Subscription has seen (yielded or not).
        self.gaps = 0
        self._bus = bus
        self._queue: deque = deque()
        self._events = 0  # events in _queue (Gaps excluded)
        self._lost = 0  # dropped since the reader last got a Gap
        self._waiter: Optional[asyncio.Future] = None
        self._state = "new"  # new -> active -> closed
        # Set by the bus when this subscription may have missed events; the
        # Gap is queued once the broker has the subscription again.
        self._gap_reason: Optional[str] = None

    @property
    def active(self) -> bool:
        return self._state == "active"

    async def __aenter__(self) -> "Subscription":
        if self._state != "new":
            raise BusError(f"subscription to {self.pattern!r} was already entered")
        self._state = "active"
        try:
            await self._bus._attach(self)
        except BaseException:
            self._state = "closed"
            await self._bus._detach(self)  # never suspends: safe even when cancelled
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop receiving; a reader blocked in ``async for`` ends."""
        if self._state == "active":
            self._state = "closed"
            self._wake()
            await self._bus._detach(self)
        self._state = "closed"

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._lost:
                lost, self._lost = self._lost, 0
                if self.gaps_enabled:
                    return Gap("overflow", lost)
            if self._queue:
                item = self._queue.popleft()
                if not item.gap:
                    self._events -= 1
                return item
            if self._state != "active":
                if self._state == "new":
                    raise BusError("enter the subscription first: async with bus.subscribe(pattern) as sub")
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _put(self, event: Event) -> None:
        if self._events >= self.maxsize:
            self._drop_oldest()
        self._queue.append(event)
        self._events += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drop_oldest(self) -> None:
        kept = []
        while True:
            item = self._queue.popleft()
            if not item.gap:
                break
            kept.append(item)
        self._queue.extendleft(reversed(kept))
        self._events -= 1
        self.dropped += 1
        if not self._lost:
            self.gaps += 1
        self._lost += 1

    def _put_gap(self, reason: str) -> None:
        self.gaps += 1
        if self.gaps_enabled:
            self._queue.append(Gap(reason))
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<Subscription {self.pattern!r} {self._state} queued={self._events} dropped={self.dropped}>"


class Bus:
    """What every bus offers. Subclasses provide ``publish``, ``flush`` and the
    hooks ``_attach``/``_detach``; the local fan-out to Subscriptions is here."""

    def __init__(self) -> None:
        self._local = impl.SubscriptionIndex()
        self._pattern_refs: dict[str, int] = {}
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    async def publish(self, topic: str, payload: Any = None) -> None:
        """Publish ``payload`` (anything orjson encodes) on ``topic``.

        Raises TopicError/TypeError for a caller's mistake only; an event the
        bus cannot deliver is dropped and counted, never raised.
        """
        raise NotImplementedError

    def subscribe(self, pattern: str, *, maxsize: int = C.DEFAULT_SUBSCRIPTION_QUEUE, gaps: bool = True) -> Subscription:
        """A Subscription to ``pattern`` (``*`` one token, ``>`` the rest); enter it with ``async with``."""
        if self._closed:
            raise BusError("the bus is closed")
        return Subscription(self, pattern, maxsize, gaps)

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Return once the broker has processed everything this bus sent before."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the bus: every Subscription ends."""
        self._closed = True
        for sub in list(self._subscriptions):
            await sub.close()

    async def __aenter__(self) -> "Bus":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    def stats(self) -> dict:
        """Counters of this bus (what was published, dropped, ...)."""
        return {"subscriptions": len(self._subscriptions)}

    # -- shared machinery

    def _encode(self, topic: str, payload: Any, max_payload: int) -> bytes:
        check_topic(topic)
        if topic.startswith(C.RESERVED_PREFIX):
            raise TopicError(f"topic {topic!r} is reserved for the broker ({C.RESERVED_PREFIX}*)", C.E_RESERVED_TOPIC)
        body = orjson.dumps(payload)
        if len(body) > max_payload:
            raise BusError(f"payload of {len(body)} bytes exceeds the broker's limit of {max_payload} bytes")
        return body

    def _register(self, sub: Subscription) -> bool:
        """Add ``sub`` to the local fan-out; True if its pattern is new here."""
        if self._closed:
            raise BusError("the bus is closed")
        self._subscriptions.add(sub)
        self._local.add(sub.pattern, sub)
        refs = self._pattern_refs.get(sub.pattern, 0)
        self._pattern_refs[sub.pattern] = refs + 1
        return refs == 0

    def _unregister(self, sub: Subscription) -> bool:
        """Remove ``sub``; True if no other local Subscription has its pattern."""
        if sub not in self._subscriptions:
            return False
        self._subscriptions.discard(sub)
        self._local.remove(sub.pattern, sub)
        refs = self._pattern_refs[sub.pattern] - 1
        if refs:
            self._pattern_refs[sub.pattern] = refs
            return False
        del self._pattern_refs[sub.pattern]
        return True

    def _deliver(self, topic: str, raw: bytes) -> None:
        subs = self._local.lookup(topic)
        if subs:
            event = Event(topic, raw)
            for sub in subs:
                sub._put(event)

    async def _attach(self, sub: Subscription) -> None:
        raise NotImplementedError

    async def _detach(self, sub: Subscription) -> None:
        raise NotImplementedError
