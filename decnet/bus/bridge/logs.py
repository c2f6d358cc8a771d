"""The bridge's logger, and how often one kind of complaint reaches it.

A bridge whose NATS server is away, or refuses it, would say the same thing
for every event; ``Complaints`` lets one warning of each kind through per
``LOG_EVERY`` s. A bridge has one, shared by its pumps and its supervisor.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("decnet.bus.bridge")

#: How often one kind of complaint (NATS unreachable, permission denied) is logged at most.
LOG_EVERY = 10.0


class Complaints:
    """``complain(kind, message, *args)``: log ``message`` unless one of its
    ``kind`` was logged in the last LOG_EVERY s."""

    __slots__ = ("_logged",)

    def __init__(self) -> None:
        self._logged: dict[str, float] = {}

    def __call__(self, kind: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self._logged[kind] = now
            log.warning(message, *args)
