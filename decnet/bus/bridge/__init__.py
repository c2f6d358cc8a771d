"""Federation of host buses over NATS: ``decnet bus bridge``.

``mapping`` holds the rules (names on both sides, what may cross, the loop
guards), pure; ``config`` what a bridge is told; ``core`` the ``Bridge``
itself, which wires its parts: ``export_pump`` (local → NATS),
``import_pump`` (NATS → local), ``nats_link`` (the NATS connection, kept),
``wire`` (the header block on the NATS wire), ``notices`` (the bridge's own
events) and ``logs``; ``worker`` the process. nats-py (the ``bridge`` extra)
is imported only when a bridge connects, so importing this package needs
nothing extra.
"""

from __future__ import annotations

from .config import BridgeConfig, ConfigError, read_password
from .core import Bridge, nats_supported
from .mapping import ALL_BRIDGE_GAPS, ORIGIN, SEQ, Mapping, MappingError, covers, gap_topic, health_topic, merge, overlaps

__all__ = [
    "ALL_BRIDGE_GAPS",
    "ORIGIN",
    "SEQ",
    "Bridge",
    "BridgeConfig",
    "ConfigError",
    "Mapping",
    "MappingError",
    "covers",
    "gap_topic",
    "health_topic",
    "merge",
    "nats_supported",
    "overlaps",
    "read_password",
]
