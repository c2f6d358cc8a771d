"""The life cycle of ``decnet bus bridge``: loop, signals, systemd
notification, and the exit code (0 after SIGTERM/SIGINT and a drain)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from .. import systemd
from ..worker import StartupError, loop_factory
from .config import BridgeConfig
from .core import Bridge

log = logging.getLogger("decnet.bus.bridge")


def run(config: BridgeConfig) -> int:
    """Run a bridge until SIGTERM/SIGINT; the process exit code. ``config``
    must have passed ``config.check()`` (the command line does it)."""
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        loop_name, factory = loop_factory(config.loop)
    except StartupError as error:
        log.error("%s", error)
        return 1
    loop = factory()
    try:
        loop.run_until_complete(_serve(config, loop_name))
    finally:
        loop.close()
    return 0


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
