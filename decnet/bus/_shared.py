"""What the two hot-path twins share as plain Python: the ``Gap`` marker, the
states of an ``EventQueue`` and the messages of their argument errors.

The compiled ``_fastmatch`` and the pure ``_pure`` package both import these,
so neither can drift from the other here. The wire limits are in ``constants``.
"""

from __future__ import annotations

from typing import Optional

from . import constants as C

#: ``EventQueue.state``: not entered yet, live, ended.
NEW, ACTIVE, CLOSED = 0, 1, 2


class Gap:
    """Events may have been lost here: resynchronize from the database.

    ``reason`` is ``"overflow"`` (the Subscription's own queue dropped
    ``lost`` events, oldest first), ``"reconnect"`` (the connection to the
    broker was lost and is back), ``"connect"`` (entered while no broker
    answered, live now) or ``"slow_consumer"`` (the broker dropped events
    queued for this connection: the client read too slowly). It comes once
    the subscription is live again, so a resync done on receiving it misses
    nothing.
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


def not_str(what: str, value: object) -> TypeError:
    """The error for a ``what`` argument that is not a str."""
    return TypeError(f"{what} must be str, not {type(value).__name__}")


def not_str_or_none(what: str, value: object) -> TypeError:
    """The error for a ``what`` argument that is neither a str nor None."""
    return TypeError(f"{what} must be str or None, not {type(value).__name__}")


BAD_CACHE_SIZE = "cache_size must be >= 0"
BAD_MAXSIZE = "maxsize must be >= 1"
BAD_MAX_PAYLOAD = f"max_payload must be within 0..{C.MAX_LEN_FIELD}"
