"""Client-side delivery: ``Event``, the ``EventQueue`` behind a Subscription,
``deliver`` and ``client_feed``.

The pure-Python twin of ``_delivery.pxi``: same names, same answers, same errors.
"""

from __future__ import annotations

import asyncio
from collections import deque

from orjson import loads as _loads

from .. import constants as C
from .._shared import ACTIVE, BAD_MAXSIZE, NEW, Gap
from .codec import FrameDecoder
from .index import SubscriptionIndex

_EVT = C.EVT

_UNDECODED = object()


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
        self._payload = _UNDECODED

    @property
    def payload(self):
        """The decoded JSON payload (None for an empty body)."""
        if self._payload is _UNDECODED:
            self._payload = _loads(self.raw) if self.raw else None
        return self._payload

    def __repr__(self) -> str:
        return f"Event({self.topic!r}, {self.raw[:60]!r})"


class EventQueue:
    """The bounded, drop-oldest queue behind a Subscription, and its async iteration.

    ``state`` is NEW, ACTIVE or CLOSED (the Subscription moves it); iteration
    waits for events while ACTIVE, and otherwise ends once the queue is empty.
    """

    def __init__(self, maxsize: int = C.DEFAULT_SUBSCRIPTION_QUEUE, gaps: bool = True) -> None:
        if maxsize < 1:
            raise ValueError(BAD_MAXSIZE)
        self.maxsize = maxsize
        self.gaps_enabled = gaps
        #: Events dropped by this queue when full.
        self.dropped = 0
        #: Gaps seen (yielded or not).
        self.gaps = 0
        self.state = NEW
        self._queue: deque = deque()
        self._events = 0  # Events in _queue (Gaps excluded)
        self._lost = 0  # dropped since the reader last got a Gap
        self._waiter = None

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return self._events

    def put(self, event: Event) -> None:
        if self._events >= self.maxsize:
            self._drop_oldest()
        self._queue.append(event)
        self._events += 1
        if self._waiter is not None:
            self.wake()

    def put_gap(self, reason: str) -> None:
        self.gaps += 1
        if self.gaps_enabled:
            # One marker per stretch of loss: a Subscription nobody reads, told
            # of loss again and again, must not fill up with Gaps.
            if self._queue and self._queue[-1].gap:
                return
            self._queue.append(Gap(reason))
            self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drop_oldest(self) -> None:
        # Gaps in front of the oldest event now mark one stretch of loss: keep
        # the first of them only, so dropping stays O(1).
        queue, kept = self._queue, None
        while True:
            item = queue.popleft()
            if not item.gap:
                break
            if kept is None:
                kept = item
        while queue and queue[0].gap:  # the dropped event's neighbours join the same stretch
            item = queue.popleft()
            if kept is None:
                kept = item
        if kept is not None:
            queue.appendleft(kept)
        self._events -= 1
        self.dropped += 1
        if not self._lost:
            self.gaps += 1
        self._lost += 1

    def __aiter__(self):
        return self

    async def __anext__(self):
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
            if self.state != ACTIVE:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


def deliver(index: SubscriptionIndex, topic: str, raw: bytes) -> int:
    """Put one Event on every EventQueue of ``index`` whose pattern matches; how many."""
    queues = index.lookup(topic)
    if queues:
        event = Event(topic, raw)
        for queue in queues:
            queue.put(event)
    return len(queues)


def client_feed(decoder: FrameDecoder, index: SubscriptionIndex, data) -> list:
    """Feed ``data`` to a client's decoder: deliver every EVT, return the other frames.

    An EVT without a topic (no broker sends one) has nothing to be delivered
    on: it is returned with the other frames rather than raising."""
    others = []
    for frame in decoder.feed(data):
        if frame[0] is _EVT and frame[1] is not None:
            deliver(index, frame[1], frame[2])
        else:
            others.append(frame)
    return others
