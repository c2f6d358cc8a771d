"""Picks the hot-path implementation, the compiled ``_fastmatch`` or its twin
``_pure``, and binds each of its names once for the rest of the package.

The twin is used when the extension is missing (an install made with
``DECNET_BUS_NO_EXTENSIONS=1``) or when ``DECNET_BUS_NO_EXTENSIONS=1`` is set at
run time. ``ACCELERATED`` says which one this process runs. Other modules import
the names below from here; code that runs on a twin of its choosing (``Bus``,
``Broker``, the tests) takes the module itself as ``impl``.
"""

from __future__ import annotations

import os
from types import ModuleType

from . import _pure


def env_flag(name: str) -> bool:
    """A boolean environment variable: unset, '', '0', 'false', 'no', 'off' are false."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


NO_EXTENSIONS = env_flag("DECNET_BUS_NO_EXTENSIONS")

try:
    from . import _fastmatch
except ImportError:  # installed with the opt-out, or never built
    _fastmatch = None  # type: ignore[assignment]

#: The selected implementation: a module holding every hot-path name.
impl: ModuleType = _pure if NO_EXTENSIONS or _fastmatch is None else _fastmatch
ACCELERATED: bool = impl is not _pure


def implementations() -> dict[str, ModuleType]:
    """Every implementation importable here, by name: what tests and benchmarks run against."""
    found = {"pure": _pure}
    if _fastmatch is not None:
        found["compiled"] = _fastmatch
    return found


# topics
check_topic = impl.check_topic
check_pattern = impl.check_pattern
matches = impl.matches
# index
SubscriptionIndex = impl.SubscriptionIndex
# codec
FrameDecoder = impl.FrameDecoder
encode = impl.encode
# delivery (Gap and the states are the same objects in both twins)
Event = impl.Event
EventQueue = impl.EventQueue
deliver = impl.deliver
client_feed = impl.client_feed
Gap = impl.Gap
NEW, ACTIVE, CLOSED = impl.NEW, impl.ACTIVE, impl.CLOSED
# routing
RouteStats = impl.RouteStats
FlushSet = impl.FlushSet
Outbox = impl.Outbox
route = impl.route
relay = impl.relay
