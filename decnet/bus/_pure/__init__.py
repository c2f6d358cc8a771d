"""The pure-Python twin of the compiled ``_fastmatch``: every hot-path name, one
namespace.

Used when the extension is missing or ``DECNET_BUS_NO_EXTENSIONS=1``. Its
modules mirror ``_fastmatch``'s include files one to one (``topics`` is
``_topics.pxi``, and so on for ``index``, ``codec``, ``delivery`` and
``routing``) with the same names, answers and errors: change both. Re-exported
here so that ``impl.X`` reads the same whichever twin ``impl`` is.
"""

from .._shared import ACTIVE, CLOSED, NEW, Gap
from .codec import FrameDecoder, encode
from .delivery import Event, EventQueue, client_feed, deliver
from .index import SubscriptionIndex
from .routing import FlushSet, Outbox, RouteStats, relay, route
from .topics import check_pattern, check_topic, matches

__all__ = [
    "ACTIVE",
    "CLOSED",
    "NEW",
    "Event",
    "EventQueue",
    "FrameDecoder",
    "Gap",
    "FlushSet",
    "Outbox",
    "RouteStats",
    "SubscriptionIndex",
    "check_pattern",
    "check_topic",
    "client_feed",
    "deliver",
    "encode",
    "matches",
    "relay",
    "route",
]
