"""The life cycle of ``decnet bus bridge``: loop, signals, systemd
notification, and the exit code (0 after SIGTERM/SIGINT and a drain)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from .. import systemd
from ..worker import run_service
from .config import BridgeConfig
from .core import Bridge

log = logging.getLogger("decnet.bus.bridge")


def run(config: BridgeConfig) -> int:
    """Run a bridge until SIGTERM/SIGINT; the process exit code. ``config``
    must have passed ``config.check()`` (the command line does it)."""
    return run_service(config.log_level, config.loop, lambda loop_name: _serve(config, loop_name))


async def _serve(config: BridgeConfig, loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    bridge = Bridge(config)
    stop = asyncio.Event()

    def stopping() -> None:
        # A second signal while draining must not kill the process: ignore it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        systemd.notify("STOPPING=1")
        log.info("bridge %s: stopping", bridge.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    watchdog = systemd.watchdog_interval()
    pinger = loop.create_task(_watchdog(watchdog)) if watchdog else None

    def ready() -> None:
        log.info("bridge %s ready: local bus %s, loop=%s, pid=%d", bridge.name, getattr(bridge.bus, "path", "?"),
                 loop_name, os.getpid())
        systemd.notify(f"READY=1\nSTATUS=bridging {bridge.name} to {','.join(config.servers)}\nMAINPID={os.getpid()}")

    try:
        await bridge.run(stop, ready)
    finally:
        if pinger is not None:
            pinger.cancel()


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
