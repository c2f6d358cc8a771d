"""``get_bus()``: the process's bus, built from the environment (docs/protocol.md §6)."""

from __future__ import annotations

import os
from typing import Optional

from ._compat import env_flag
from .base import Bus
from .config import ENV_ENABLED
from .fake import NullBus
from .unix_client import UnixBus

_bus: Optional[Bus] = None


def bus_enabled() -> bool:
    """False when ``DECNET_BUS_ENABLED`` is false/0/no/off; the bus is on by default."""
    value = os.environ.get(ENV_ENABLED)
    return value is None or value.strip() == "" or env_flag(ENV_ENABLED)


def get_bus(name: Optional[str] = None) -> Bus:
    """The process's bus: a NullBus when ``DECNET_BUS_ENABLED=false``, else a
    UnixBus on ``$DECNET_BUS_SOCKET`` (or the standard path). It connects
    lazily, on first publish or subscribe. ``name`` is what the broker logs
    for this process (default: the program's name); it counts on first call only.
    """
    global _bus
    if _bus is None:
        _bus = UnixBus(name=name) if bus_enabled() else NullBus()
    return _bus
