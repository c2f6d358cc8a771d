"""``Bridge``: one host's bus and NATS, joined both ways, with its counters.

Two pumps and a supervisor, all on one event loop, each in a module of its own:

- ``export_pump``: local bus → NATS, each export published as
  ``<prefix>.<topic>`` with its payload bytes as they came;
- ``import_pump``: NATS → local bus, through one bounded queue in the order
  the server sent the messages, second copies and loops dropped;
- ``nats_link``: the supervisor, which keeps a NATS connection (any server
  of the list, reconnect forever; a client nats-py gave up on is replaced)
  and has local consumers told on ``system.bridge.<name>.gap`` when imported
  events may have been lost.

Here they are made and wired, run, and drained; the heartbeat
(``system.bridge.<name>.health``) reports their counters. Nothing here blocks
a local publisher: the broker never waits for the bridge (its queue for us is
bounded), and each side's backlog is bounded and sheds its oldest events,
counted.
"""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Optional

import orjson

from ..base import Bus
from ..errors import BusError
from ..unix_client import UnixBus
from .config import BridgeConfig
from .export_pump import ExportPump
from .import_pump import ImportPump
from .logs import Complaints, log
from .mapping import Mapping, gap_topic, health_topic
from .nats_link import NatsLink, nats_supported
from .notices import now

__all__ = ["Bridge", "nats_supported"]


def _counter(path: str, doc: str) -> property:
    """A read-only attribute of the bridge that is one of its parts' (``"part.name"``)."""
    return property(operator.attrgetter(path), doc=doc)


class Bridge:
    """A host's bus joined to NATS as ``config`` says.

    ``await bridge.run(stop)`` runs until ``stop`` is set, then hands over what
    it holds (at most ``config.drain_timeout`` s). ``bus`` replaces the local
    client (tests). The counters are its parts', read here; ``health()`` is
    what the heartbeat publishes.
    """

    exported = _counter("exporter.exported", "Local events published on NATS.")
    imported = _counter("importer.imported", "NATS messages published on the local bus.")
    dropped_export = _counter("exporter.dropped_export",
                              "Local events that could not cross (NATS away, its buffer full, the export queue full).")
    dropped_import = _counter("importer.dropped_import",
                              "NATS messages that could not cross (the import queue full, the local broker away).")
    invalid = _counter("importer.invalid", "Imports whose subject is not a decnet topic.")
    looped = _counter("importer.looped", "Imports this bridge exported itself (dropped).")
    duplicates = _counter("importer.duplicates",
                          "Second copies of a message from overlapping import subscriptions (dropped).")
    denied = _counter("link.denied", "Publishes and subscriptions the NATS server refused (permissions).")
    reconnects = _counter("link.reconnects", "NATS connections made again after one was lost.")
    nats_errors = _counter("link.nats_errors", "Other errors the NATS client reported.")
    nc = _counter("link.nc", "The NATS client in use, or None.")

    def __init__(self, config: BridgeConfig, *, bus: Optional[Bus] = None) -> None:
        self.config = config
        self.mapping: Mapping = config.check()
        self.name = self.mapping.name
        self.bus = bus if bus is not None else UnixBus(config.socket, name=f"decnet bus bridge {self.name}", echo=False)
        self.health_topic = health_topic(self.name)
        self.gap_topic = gap_topic(self.name)
        self.started = time.monotonic()
        complain = Complaints()
        self.importer = ImportPump(config, self.mapping, self.bus, complain)
        self.link = NatsLink(config, self.mapping, complain,
                             on_message=self.importer.on_message, on_connect=self.importer.notice_gap)
        self.exporter = ExportPump(config, self.mapping, self.bus, self.link, complain,
                                   on_local_back=self.importer.kick)

    # -- state

    @property
    def connected(self) -> bool:
        """Connected to a NATS server now."""
        return self.link.connected

    @property
    def server(self) -> Optional[str]:
        """``host:port`` of the NATS server in use, or None."""
        return self.link.server

    @property
    def live(self) -> bool:
        """Both sides subscribed: an event published from now on crosses."""
        sub = self.exporter.sub
        local = not self.mapping.exports or (
            sub is not None and sub.active and sub.pending_gap is None and getattr(self.bus, "connected", True))
        return local and self.connected and (self.link.live or not self.mapping.imports)

    def health(self) -> dict:
        """The heartbeat's payload."""
        sub = self.exporter.sub
        shed = sub.dropped if sub is not None else 0
        return {
            "v": 1,
            "ts": now(),
            "name": self.name,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "connected": self.connected,
            "server": self.server,
            "live": self.live,
            "local_connected": bool(getattr(self.bus, "connected", True)),
            "exported": self.exported,
            "imported": self.imported,
            "dropped_export": self.dropped_export + shed + getattr(self.bus, "broker_dropped", 0),
            "dropped_import": self.dropped_import,
            "invalid": self.invalid,
            "looped": self.looped,
            "duplicates": self.duplicates,
            "denied": self.denied,
            "reconnects": self.reconnects,
            "nats_errors": self.nats_errors,
            "queued_import": self.importer.queued,
            "prefix": self.mapping.prefix,
            "exports": list(self.mapping.exports),
            "imports": list(self.mapping.imports),
        }

    # -- the run

    async def run(self, stop: asyncio.Event, ready=None) -> None:
        """Bridge until ``stop`` is set, then drain. ``ready`` (a callable) is
        called once both pumps and the supervisor are started."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.importer.run(self.exporter.publish_own), name="bridge-import")]
        if self.mapping.exports:
            await self.exporter.open()
            tasks.append(loop.create_task(self.exporter.run(), name="bridge-export"))
        supervisor = loop.create_task(self.link.supervise(), name="bridge-nats")
        heartbeat = loop.create_task(self._heartbeat(), name="bridge-health") if self.config.health_interval else None
        log.info("bridge %s: exports %s, imports %s, prefix %s, NATS %s", self.name, list(self.mapping.exports) or "none",
                 list(self.mapping.imports) or "none", self.mapping.prefix, ",".join(self.config.servers))
        if ready is not None:
            ready()
        waiter = loop.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([waiter, supervisor, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
        finally:
            self.link.stopping = True
            if heartbeat is not None:
                heartbeat.cancel()
            try:
                await asyncio.wait_for(self._drain(tasks, supervisor), self.config.drain_timeout)
            except asyncio.TimeoutError:
                log.warning("bridge %s: drain took over %.1f s; stopping anyway", self.name, self.config.drain_timeout)
            for task in (*tasks, supervisor, heartbeat, waiter):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (*tasks, supervisor, heartbeat, waiter) if t is not None),
                                 return_exceptions=True)
            await self.link.close()
            await self.bus.close()
            log.info("bridge %s stopped: exported %d, imported %d, dropped %d/%d", self.name, self.exported,
                     self.imported, self.dropped_export, self.dropped_import)

    async def _drain(self, tasks: list, supervisor: asyncio.Task) -> None:
        """What the bridge holds crosses before it goes: the local events
        queued for export, then NATS's outgoing buffer, then the imports queued
        for the local broker."""
        if self.exporter.sub is not None:
            await self.exporter.close()  # the export pump ends once its queue is empty
            await asyncio.gather(*tasks[1:], return_exceptions=True)
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await self.link.drain()
        self.importer.kick()
        while self.importer.queued and not tasks[0].done():
            await asyncio.sleep(0.01)
        try:
            await self.bus.flush(1.0)
        except (BusError, asyncio.TimeoutError):
            pass

    async def _heartbeat(self) -> None:
        interval = self.config.health_interval
        while True:
            await asyncio.sleep(interval)
            self.importer.notice(self.health_topic, orjson.dumps(self.health()))
