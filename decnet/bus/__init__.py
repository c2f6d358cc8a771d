"""decnet-bus: DECNET's host-local publish/subscribe event bus.

``ACCELERATED`` is True when the compiled hot path (``_fastmatch``) is in use.
"""

from __future__ import annotations

from ._compat import ACCELERATED, impl
from .errors import BusError, FrameError, TopicError
from .topics import check_pattern, check_topic, matches

SubscriptionIndex = impl.SubscriptionIndex

__version__ = "0.1.0"

__all__ = [
    "ACCELERATED",
    "BusError",
    "FrameError",
    "SubscriptionIndex",
    "TopicError",
    "check_pattern",
    "check_topic",
    "matches",
]
