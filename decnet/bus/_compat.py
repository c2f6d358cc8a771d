"""Picks the hot-path implementation: the compiled ``_fastmatch`` or its twin.

The twin is used when the extension is missing (an install made with
``DECNET_BUS_NO_EXTENSIONS=1``) or when ``DECNET_BUS_NO_EXTENSIONS=1`` is set at
run time. ``ACCELERATED`` says which one this process runs.
"""

from __future__ import annotations

import os
from types import ModuleType

from . import _purematch


def env_flag(name: str) -> bool:
    """A boolean environment variable: unset, '', '0', 'false', 'no', 'off' are false."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


NO_EXTENSIONS = env_flag("DECNET_BUS_NO_EXTENSIONS")

try:
    from . import _fastmatch
except ImportError:  # installed with the opt-out, or never built
    _fastmatch = None  # type: ignore[assignment]

impl: ModuleType = _purematch if NO_EXTENSIONS or _fastmatch is None else _fastmatch
ACCELERATED: bool = impl is not _purematch


def implementations() -> dict[str, ModuleType]:
    """Every implementation importable here, by name: what tests and benchmarks run against."""
    found = {"pure": _purematch}
    if _fastmatch is not None:
        found["compiled"] = _fastmatch
    return found
