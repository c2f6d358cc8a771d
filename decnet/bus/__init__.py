"""decnet-bus: DECNET's host-local publish/subscribe event bus.

    from decnet.bus import get_bus
    bus = get_bus()
    await bus.publish("decky.d1.state", {"state": "up"})
    async with bus.subscribe("decky.*.state") as sub:
        async for evt in sub:
            if evt.gap:        # events may have been lost: resync from the DB
                continue
            print(evt.topic, evt.payload)

``ACCELERATED`` is True when the compiled hot path (``_fastmatch``) is in use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._compat import ACCELERATED, SubscriptionIndex
from .base import BaseSubscription, Bus, Event, Gap, Subscription
from .errors import BusError, FrameError, PayloadTooLarge, TopicError
from .factory import get_bus
from .fake import FakeBus, NullBus
from .topics import check_pattern, check_topic, matches
from .unix_client import BusUnavailable, UnixBus

__all__ = [
    "ACCELERATED",
    "BaseSubscription",
    "Bus",
    "BusError",
    "BusUnavailable",
    "Event",
    "FakeBus",
    "FrameError",
    "Gap",
    "NullBus",
    "PayloadTooLarge",
    "Subscription",
    "SubscriptionIndex",
    "TopicError",
    "UnixBus",
    "check_pattern",
    "check_topic",
    "get_bus",
    "matches",
]
