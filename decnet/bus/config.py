"""Where the broker's socket is (SPEC §1), and ``BrokerConfig``: every broker
option defined once, with its default and its bounds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import constants as C

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


@dataclass(frozen=True)
class BrokerConfig:
    """Every option of ``decnet bus``: the CLI builds one, ``Broker`` and the
    worker read it. Durations are in seconds, sizes in bytes."""

    socket: Optional[str] = None
    loop: str = "auto"  # auto | uvloop | asyncio
    group: str = "decnet"
    mode: int = 0o660
    max_payload: int = C.DEFAULT_MAX_PAYLOAD
    queue_limit: int = C.DEFAULT_QUEUE_LIMIT
    health_interval: float = C.DEFAULT_HEALTH_INTERVAL
    max_subscriptions: int = C.DEFAULT_MAX_SUBSCRIPTIONS
    max_connections: int = C.DEFAULT_MAX_CONNECTIONS
    max_stall: float = C.DEFAULT_MAX_STALL
    hello_timeout: float = C.HELLO_TIMEOUT
    log_level: str = "info"
    #: Bench only: False writes each delivery on its own instead of one write
    #: per connection per read, to measure what batching buys.
    batch_writes: bool = True
