"""The import pump: NATS → local bus.

The NATS subscriptions feed ``on_message`` in the order the server sent them;
it drops what must not cross (this bridge's own exports, subjects that are not
decnet topics, the second copy two overlapping subscriptions deliver, told by
origin, run and sequence number) and queues the rest in one bounded queue,
which sheds its oldest imports, counted. A task publishes each message's bytes
on the local bus with ``publish_raw``, in order, with the bridge's own notices
(heartbeat, gap) among them; imports lost on the way are told on
``system.bridge.<name>.gap``, again until the local bus takes the notice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Awaitable, Callable, Optional

from ..base import Bus
from ..errors import BusError, TopicError
from .config import BridgeConfig
from .logs import Complaints
from .mapping import ORIGIN, SEQ, Dedupe, Mapping, gap_topic
from .notices import Notice, gap_body

#: Seconds between attempts to tell local consumers of lost imports while the local bus is away.
RETELL = 0.5


class ImportPump:
    """Imports ``mapping``'s NATS subjects onto ``bus``.

    ``on_message`` takes each NATS message, ``notice``/``notice_gap`` queue
    the bridge's own events, ``run(export_own)`` publishes what is queued
    until cancelled; ``export_own`` exports a notice that an export pattern
    matches. ``kick()`` wakes the pump (something to publish, or to tell).
    """

    def __init__(self, config: BridgeConfig, mapping: Mapping, bus: Bus, complain: Complaints) -> None:
        self.config = config
        self.mapping = mapping
        self.name = mapping.name
        self.bus = bus
        self.gap_topic = gap_topic(self.name)
        self._complain = complain
        #: NATS messages published on the local bus.
        self.imported = 0
        #: NATS messages that could not cross (the import queue full, the local broker away).
        self.dropped_import = 0
        #: Imports whose subject is not a decnet topic.
        self.invalid = 0
        #: Imports this bridge exported itself (dropped).
        self.looped = 0
        #: Second copies of a message from overlapping import subscriptions (dropped).
        self.duplicates = 0
        self._dedupe = Dedupe() if mapping.overlapping else None
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._wake: Optional[asyncio.Future] = None
        self._lost = 0  # imports lost since the last gap notice
        self._lost_reason = "overflow"  # why the first of them was lost

    @property
    def queued(self) -> int:
        """Imports and notices waiting for the local bus."""
        return len(self._queue)

    def on_message(self, msg) -> None:
        """One NATS message, in the server's order: drop it here or queue it for the local bus."""
        headers = msg.headers
        origin = headers.get(ORIGIN) if headers else None
        if origin == self.name:
            self.looped += 1
            return
        topic = self.mapping.topic(msg.subject)
        if topic is None:
            self.invalid += 1
            self._complain("invalid", "bridge %s: dropped an import on %r: not a decnet topic", self.name, msg.subject)
            return
        if self._dedupe is not None and origin is not None and self._dedupe.duplicate(origin, headers.get(SEQ)):
            self.duplicates += 1
            return
        self._enqueue((topic, msg.data), len(msg.data))

    def notice(self, topic: str, body: bytes) -> None:
        """Queue the bridge's own event, to reach local consumers after what is queued already."""
        self._enqueue(Notice(topic, body), 0)

    def notice_gap(self, reason: str, lost: Optional[int] = None) -> None:
        """Tell local consumers, after what is already queued, that imported
        events may have been lost (``system.bridge.<name>.gap``)."""
        if not self.mapping.imports and not self.mapping.exports_topic(self.gap_topic):
            return
        self.notice(self.gap_topic, gap_body(self.name, reason, lost, self.mapping.imports))

    def _enqueue(self, item, size: int) -> None:
        queue = self._queue
        queue.append(item)
        self._queued_bytes += size
        config = self.config
        while len(queue) > config.import_queue or self._queued_bytes > config.import_queue_bytes:
            # Shed the oldest import; the bridge's own notices are few and never shed.
            for i, old in enumerate(queue):
                if type(old) is tuple:
                    break
            else:
                break
            del queue[i]
            self._queued_bytes -= len(old[1])
            self.dropped_import += 1
            self._note_lost("overflow")
        self.kick()

    def _note_lost(self, reason: str) -> None:
        if not self._lost:
            self._lost_reason = reason
        self._lost += 1

    def kick(self) -> None:
        """Wake the pump: something was queued, or lost imports can be told now."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def run(self, export_own: Callable[[str, bytes], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        queue, bus = self._queue, self.bus
        counted = hasattr(bus, "dropped")
        while True:
            if self._lost:
                await self._tell_lost(export_own)
            if not queue:
                self._wake = loop.create_future()
                # While a loss is still untold (the local bus is away), try again now and then.
                timeout = RETELL if self._lost else None
                try:
                    await asyncio.wait_for(self._wake, timeout)
                except asyncio.TimeoutError:
                    pass
                continue
            item = queue.popleft()
            if type(item) is tuple:
                topic, data = item
                self._queued_bytes -= len(data)
                before = bus.dropped if counted else 0
                try:
                    await bus.publish_raw(topic, data)
                except (TopicError, BusError) as error:  # over the local broker's limit, or the bus closed
                    self.dropped_import += 1
                    self._note_lost("local")
                    self._complain("local", "bridge %s: could not publish %s locally: %s", self.name, topic, error)
                    continue
                if counted and bus.dropped != before:  # the local broker is away or stuck
                    self.dropped_import += 1
                    self._note_lost("local")
                else:
                    self.imported += 1
            else:
                topic, body = item.topic, item.body
                await self._publish_local(topic, body)
                if self.mapping.exports_topic(topic):
                    await export_own(topic, body)

    async def _tell_lost(self, export_own: Callable[[str, bytes], Awaitable[None]]) -> None:
        """Publish the gap notice for the imports lost so far; if the local bus
        drops it too, it stays owed."""
        lost, reason = self._lost, self._lost_reason
        self._lost = 0
        before = getattr(self.bus, "dropped", 0)
        published = await self._publish_local(self.gap_topic, gap_body(self.name, reason, lost, self.mapping.imports))
        if not published or getattr(self.bus, "dropped", 0) != before:
            self._lost += lost
            self._lost_reason = reason
            return
        self._complain("lost", "bridge %s: %d imports were lost (%s)", self.name, lost, reason)
        if self.mapping.exports_topic(self.gap_topic):
            await export_own(self.gap_topic, gap_body(self.name, reason, lost, self.mapping.imports))

    async def _publish_local(self, topic: str, body: bytes) -> bool:
        try:
            await self.bus.publish_raw(topic, body)
        except (TopicError, BusError) as error:
            self._complain("local", "bridge %s: could not publish %s locally: %s", self.name, topic, error)
            return False
        return True
