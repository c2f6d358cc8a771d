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
    """An in-process bus. ``published`` records every event, for assertions."""

    def __init__(self, max_payload: int = C.DEFAULT_MAX_PAYLOAD, *, impl: Optional[ModuleType] = None) -> None:
        super().__init__(impl)
        self.max_payload = max_payload
        #: Every event published on this bus, in order.
        self.published: list = []

    async def publish(self, topic: str, payload: Any = None) -> None:
        body = self._encode(topic, payload, self.max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        self.published.append(self._impl.Event(topic, body))
        self._deliver(topic, body)

    async def publish_raw(self, topic: str, body: bytes) -> None:
        self._check_raw(topic, body, self.max_payload)
        if self._closed:
            raise BusError("the bus is closed")
        self.published.append(self._impl.Event(topic, body))
        self._deliver(topic, body)

    async def flush(self, timeout: Optional[float] = None) -> None:
        await asyncio.sleep(0)

    async def _attach(self, sub: BaseSubscription) -> None:
        self._register(sub)

    async def _detach(self, sub: BaseSubscription) -> None:
        self._unregister(sub)

    def stats(self) -> dict:
        return {**super().stats(), "published": len(self.published)}


class NullBus(Bus):
    """The bus switched off: publish checks its arguments and does nothing;
    a subscription yields nothing and ends when closed. ``impl`` as for Bus."""

    async def publish(self, topic: str, payload: Any = None) -> None:
        self._encode(topic, payload, C.MAX_LEN_FIELD)
        if self._closed:
            raise BusError("the bus is closed")

    async def publish_raw(self, topic: str, body: bytes) -> None:
        self._check_raw(topic, body, C.MAX_LEN_FIELD)
        if self._closed:
            raise BusError("the bus is closed")

    async def flush(self, timeout: Optional[float] = None) -> None:
        return None

    async def _attach(self, sub: BaseSubscription) -> None:
        self._subscriptions.add(sub)

    async def _detach(self, sub: BaseSubscription) -> None:
        self._subscriptions.discard(sub)
