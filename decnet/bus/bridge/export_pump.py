"""The export pump: local bus → NATS.

One Subscription to every export pattern on the local broker
(``UnixBus(echo=False)``); each event is published on NATS as
``<prefix>.<topic>`` with its payload bytes as they came, stamped with this
bridge's name and the next number of its run (``ORIGIN``, ``SEQ``: what
importers use to drop loops and second copies). The bridge's own events that
an export pattern matches cross the same way (``publish_own``). An event that
cannot cross (NATS away, its buffer full) is dropped and counted, never
waited for.
"""

from __future__ import annotations

from typing import Callable

from ..base import Bus
from . import wire
from .config import BridgeConfig
from .logs import Complaints, log
from .mapping import ORIGIN, SEQ, Mapping, new_epoch
from .nats_link import NatsLink


class ExportPump:
    """Exports ``mapping``'s local topics through ``link``'s NATS client.

    ``open()`` subscribes on ``bus``, ``run()`` pumps until ``close()`` and
    the queue is empty. ``on_local_back`` is called when the local broker is
    back after a restart (imports lost meanwhile can be told now).
    """

    def __init__(self, config: BridgeConfig, mapping: Mapping, bus: Bus, link: NatsLink, complain: Complaints, *,
                 on_local_back: Callable[[], None]) -> None:
        self.config = config
        self.mapping = mapping
        self.name = mapping.name
        self.bus = bus
        self.link = link
        self._complain = complain
        self._on_local_back = on_local_back
        #: The Subscription to the export patterns, once open.
        self.sub = None
        #: Local events published on NATS.
        self.exported = 0
        #: Local events that could not cross (NATS away, its buffer full, the export queue full).
        self.dropped_export = 0
        self._epoch = new_epoch()
        self._seq = 0

    async def open(self) -> None:
        """Subscribe to the export patterns: from now on the broker queues them for us."""
        self.sub = self.bus.subscribe(*self.mapping.exports, maxsize=self.config.export_queue)
        await self.sub.__aenter__()

    async def close(self) -> None:
        """Unsubscribe; ``run()`` ends once what is queued has crossed."""
        await self.sub.close()

    async def run(self) -> None:
        mapping, link = self.mapping, self.link
        subject, exported = mapping.subject, mapping.exported
        headers = {ORIGIN: self.name, SEQ: ""}
        prefix = self._epoch + "."
        # The header block as NATS writes it, all but the sequence number and the blank line.
        head = f"NATS/1.0\r\n{ORIGIN}: {self.name}\r\n{SEQ}: {prefix}".encode()
        headed = wire.headed_supported()
        async for evt in self.sub:
            if evt.gap:
                self._local_gap(evt)
                continue
            topic = evt.topic
            if not exported(topic):
                continue
            nc = link.nc
            if nc is None or nc.is_closed or not (nc.is_connected or nc.is_reconnecting):
                self.dropped_export += 1
                continue
            self._seq += 1
            try:
                if headed:
                    await wire.publish_headed(nc, subject(topic), b"%s%d\r\n\r\n" % (head, self._seq), evt.raw)
                else:
                    headers[SEQ] = prefix + str(self._seq)
                    await nc.publish(subject(topic), evt.raw, headers=headers)
            except Exception as error:  # the buffer is full while reconnecting, closed, too large: never fatal
                self.dropped_export += 1
                self._complain("export", "bridge %s: an export was dropped: %s", self.name, type(error).__name__)
            else:
                self.exported += 1

    def _local_gap(self, gap) -> None:
        """The export subscription's Gap: the local broker restarted, or shed
        events queued for us (counted in ``health``). Imports lost meanwhile
        are told by the import pump, which is woken to do it now."""
        if gap.reason in ("reconnect", "connect"):
            log.info("bridge %s: the local broker is back (%s)", self.name, gap.reason)
            self._on_local_back()

    async def publish_own(self, topic: str, body: bytes) -> None:
        """The bridge's own event, exported like a local one that an --export pattern matches."""
        nc = self.link.nc
        if nc is None or not nc.is_connected:
            return
        self._seq += 1
        try:
            await nc.publish(self.mapping.subject(topic), body,
                             headers={ORIGIN: self.name, SEQ: f"{self._epoch}.{self._seq}"})
        except Exception as error:
            self._complain("export", "bridge %s: could not export %s: %s", self.name, topic, type(error).__name__)
