"""Federation of host buses over NATS: ``decnet bus bridge``.

``mapping`` holds the rules (names on both sides, what may cross, the loop
guards), pure; ``config`` what a bridge is told; ``core`` the ``Bridge``
itself; ``worker`` the process. nats-py (the ``bridge`` extra) is imported
only when a bridge connects, so importing this package needs nothing extra.
"""

from __future__ import annotations

from .config import BridgeConfig, ConfigError, read_password
from .core import Bridge, nats_supported
from .mapping import ORIGIN, SEQ, Mapping, MappingError, covers, merge, overlaps

__all__ = [
    "ORIGIN",
    "SEQ",
    "Bridge",
    "BridgeConfig",
    "ConfigError",
    "Mapping",
    "MappingError",
    "covers",
    "merge",
    "nats_supported",
    "overlaps",
    "read_password",
]
