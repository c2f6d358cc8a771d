"""Where the broker's socket is, as server and clients both work it out (SPEC §1)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_SOCKET = "DECNET_BUS_SOCKET"
ENV_ENABLED = "DECNET_BUS_ENABLED"
RUN_DIR = Path("/run/decnet")


def socket_path(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$DECNET_BUS_SOCKET``, else /run/decnet/bus.sock when
    /run/decnet exists (production), else ~/.decnet/bus.sock (development)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_SOCKET)
    if env:
        return Path(env)
    if RUN_DIR.is_dir():
        return RUN_DIR / "bus.sock"
    return Path.home() / ".decnet" / "bus.sock"
