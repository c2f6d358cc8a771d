"""The NATS side of a bridge: one client, kept connected.

``NatsLink.supervise`` connects (any server of the list, trying each until
one answers), subscribes the imports, and starts again with a new client
whenever nats-py closes one; nats-py itself reconnects the client in use
forever in between. Its callbacks count what the server says (refusals,
errors, reconnects), and each connection made (first or again) is told to
the bridge, since imports may have been lost while it was away. The import
subscriptions reach the bridge as one ordered stream through ``_Sink``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

from . import wire
from .config import BridgeConfig
from .logs import Complaints, log
from .mapping import Mapping


def nats_supported() -> Optional[str]:
    """None when the installed nats-py can be used; else why not, in one line."""
    try:
        import nats  # noqa: F401
        from nats.aio.subscription import Subscription
    except ImportError:
        return "nats-py is not installed: pip install 'decnet-bus[bridge]'"
    if not hasattr(Subscription(None), "_pending_queue"):
        return "this nats-py version is not supported (its Subscription has no pending queue): use nats-py 2.x"
    return None


class _Sink:
    """Takes the place of a nats-py Subscription's pending queue, so the
    messages of every import subscription reach the bridge as one stream, in
    the order the server wrote them (a task per subscription, nats-py's way,
    would reorder one publisher's messages across patterns)."""

    __slots__ = ("put_nowait",)

    def __init__(self, put) -> None:
        self.put_nowait = put

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        return None


class NatsLink:
    """The bridge's NATS client, as ``config`` says.

    ``on_message`` takes every message of the import subscriptions, in the
    server's order; ``on_connect("connect" | "reconnect")`` is called once the
    server has every subscription. ``nc`` is the client in use (None before
    the first and after ``close()``); set ``stopping`` before the last drain
    so that its disconnection is not taken for a loss.
    """

    def __init__(self, config: BridgeConfig, mapping: Mapping, complain: Complaints, *,
                 on_message: Callable[[Any], None], on_connect: Callable[[str], None]) -> None:
        self.config = config
        self.mapping = mapping
        self.name = mapping.name
        self._complain = complain
        self._on_message = on_message
        self._on_connect = on_connect
        self.nc: Any = None
        #: Subscribed on the server in use: messages published there from now on reach ``on_message``.
        self.live = False
        self.stopping = False
        #: Publishes and subscriptions the NATS server refused (permissions).
        self.denied = 0
        #: NATS connections made again after one was lost.
        self.reconnects = 0
        #: Other errors the NATS client reported.
        self.nats_errors = 0

    @property
    def connected(self) -> bool:
        """Connected to a NATS server now."""
        nc = self.nc
        return nc is not None and nc.is_connected

    @property
    def server(self) -> Optional[str]:
        """``host:port`` of the NATS server in use, or None."""
        nc = self.nc
        if nc is None or not nc.is_connected or nc.connected_url is None:
            return None
        return nc.connected_url.netloc

    async def supervise(self) -> None:
        """Keep a NATS client: connect (trying every server until one answers),
        subscribe, and start again with a new client if nats-py closes one."""
        from nats.aio.client import Client

        config = self.config
        tls = config.ssl_context()
        first = True
        while True:
            nc = Client()
            if self.mapping.imports:
                wire.read_headers_fast(nc)
            closed = asyncio.get_running_loop().create_future()

            async def on_closed(closed=closed) -> None:
                if not closed.done():
                    closed.set_result(None)

            options = dict(
                servers=list(config.servers), name=f"decnet-bridge-{self.name}", no_echo=True,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=config.reconnect_wait,
                connect_timeout=2, ping_interval=config.ping_interval, max_outstanding_pings=config.max_pings,
                pending_size=config.pending_size, flush_timeout=1.0, drain_timeout=max(int(config.drain_timeout), 1),
                error_cb=self._on_error, disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                closed_cb=on_closed,
            )
            if tls is not None:
                options["tls"] = tls
            if config.user is not None:
                options.update(user=config.user, password=config.password)
            self.nc = nc
            try:
                await nc.connect(**options)
                for subject in self.mapping.import_subjects:
                    # No callback: nats-py keeps the messages in the pending
                    # queue, which the sink replaces; no byte limit, since the
                    # sink holds nothing (the bridge's own queue is the bound).
                    sub = await nc.subscribe(subject, pending_bytes_limit=0)
                    sub._pending_queue = _Sink(self._on_message)
                await nc.flush(timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._complain("connect", "bridge %s: NATS: %s; trying again", self.name, error or type(error).__name__)
                if not nc.is_closed:
                    await nc.close()
                await asyncio.sleep(config.reconnect_wait)
                continue
            self.live = True
            if not first:
                self.reconnects += 1
            log.info("bridge %s: connected to NATS at %s", self.name, self.server)
            self._on_connect("connect" if first else "reconnect")
            first = False
            await closed
            self.live = False
            log.warning("bridge %s: the NATS client closed (%s); starting a new one", self.name, nc.last_error)
            await asyncio.sleep(config.reconnect_wait)

    async def drain(self) -> None:
        """Hand NATS what the client still buffers, if it is connected."""
        nc = self.nc
        if nc is not None and nc.is_connected:
            try:
                await nc.drain()
            except Exception as error:  # a NATS client that cannot drain is closed all the same (close())
                log.debug("bridge %s: NATS drain: %s", self.name, error)

    async def close(self) -> None:
        """Close the client in use, if any; ``nc`` is None from here on."""
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()

    async def _on_error(self, error: Exception) -> None:
        text = str(error)
        if "permissions violation" in text:
            self.denied += 1
            self._complain("denied", "bridge %s: the NATS server refused: %s", self.name, text)
            return
        self.nats_errors += 1
        self._complain("nats", "bridge %s: NATS: %s", self.name, text or type(error).__name__)

    async def _on_disconnected(self) -> None:
        if not self.stopping:
            self.live = False
            log.warning("bridge %s: lost the NATS connection; reconnecting", self.name)

    async def _on_reconnected(self) -> None:
        # nats-py calls this once the server has every subscription again, so
        # a consumer that resyncs on the gap misses nothing from here on.
        self.reconnects += 1
        self.live = True
        log.info("bridge %s: reconnected to NATS at %s", self.name, self.server)
        self._on_connect("reconnect")
