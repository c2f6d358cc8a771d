"""``FakeBus`` and ``NullBus``: the same interface as the real client, no broker.

FakeBus is for other workers' unit tests: same topic rules, same matching
(``decnet.bus.matches``), same Subscription semantics, delivered in-process.
NullBus is what ``get_bus()`` returns when ``DECNET_BUS_ENABLED=false``.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any, Optional

from . import constants as C
from .base import BaseSubscription, Bus
from .errors import BusError


class FakeBus(Bus):
    """An in-process bus. ``events`` records every event published, for
    assertions; ``published`` counts them. It is ``connected`` until closed
    (there is nothing to lose), never drops, and makes no ``connects``.
    ``max_payload`` is the limit it enforces, as a broker would; ``name`` and
    ``impl`` as for Bus."""

    def __init__(self, max_payload: int = C.DEFAULT_MAX_PAYLOAD, *, name: Optional[str] = None,
                 impl: Optional[ModuleType] = None) -> None:
        super().__init__(impl, name=name, max_payload=max_payload)
        #: Every event published on this bus, in order.
        self.events: list = []

    @property
    def connected(self) -> bool:
        return not self._closed

    async def publish(self, topic: str, payload: Any = None) -> None:
        body = self._encode(topic, payload, self._max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        self.events.append(self._impl.Event(topic, body))
        self.published += 1
        self._deliver(topic, body)

    async def publish_raw(self, topic: str, body: bytes) -> None:
        self._check_raw(topic, body, self._max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        self.events.append(self._impl.Event(topic, body))
        self.published += 1
        self._deliver(topic, body)

    async def flush(self, timeout: Optional[float] = None) -> None:
        await asyncio.sleep(0)

    async def _attach(self, sub: BaseSubscription) -> None:
        self._register(sub)

    async def _detach(self, sub: BaseSubscription) -> None:
        self._unregister(sub)


class NullBus(Bus):
    """The bus switched off: publish checks its arguments as any bus does
    (``max_payload``: the default broker limit) and drops the event, counted
    in ``dropped`` (it reached no broker); it is never ``connected``. A
    subscription yields nothing and ends when closed. ``name`` and ``impl``
    as for Bus."""

    def __init__(self, max_payload: int = C.DEFAULT_MAX_PAYLOAD, *, name: Optional[str] = None,
                 impl: Optional[ModuleType] = None) -> None:
        super().__init__(impl, name=name, max_payload=max_payload)

    async def publish(self, topic: str, payload: Any = None) -> None:
        self._encode(topic, payload, self._max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        self.dropped += 1

    async def publish_raw(self, topic: str, body: bytes) -> None:
        self._check_raw(topic, body, self._max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        self.dropped += 1

    async def flush(self, timeout: Optional[float] = None) -> None:
        return None

    async def _attach(self, sub: BaseSubscription) -> None:
        self._subscriptions.add(sub)

    async def _detach(self, sub: BaseSubscription) -> None:
        self._subscriptions.discard(sub)
