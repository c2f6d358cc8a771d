"""The bridge's own events on its local bus: the heartbeat
(``system.bridge.<name>.health``) and the gap notice (``system.bridge.<name>.gap``).

Both travel in the import queue as a ``Notice``, so a consumer receives one
after the imports queued before it; ``gap_body`` is what a gap notice says.
"""

from __future__ import annotations

import datetime
from typing import Iterable, Optional

import orjson


def now() -> str:
    """The ``ts`` of the bridge's own events: UTC, to the millisecond."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Notice:
    """The bridge's own event (heartbeat, gap), queued among the imports so
    that it reaches local consumers after what was queued before it."""

    __slots__ = ("topic", "body")

    def __init__(self, topic: str, body: bytes) -> None:
        self.topic = topic
        self.body = body


def gap_body(name: str, reason: str, lost: Optional[int], imports: Iterable[str]) -> bytes:
    """Bridge ``name``'s gap notice: ``lost`` imports (None: unknown) lost for ``reason``."""
    return orjson.dumps({"v": 1, "ts": now(), "name": name, "reason": reason, "lost": lost,
                         "imports": list(imports)})
