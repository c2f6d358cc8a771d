"""One bus subscription per topology, shared by every stream of that topology
in the process (``Hub``), and the registry of hubs (``Hubs``).

A hub encodes each event's SSE frame once and pushes the same bytes to each
of its clients. It tells its clients ``stream.ready`` once its subscription is
live at the broker, and ``stream.resync`` whenever events may have been
missed (a bus ``Gap``). It is gone, and its subscription with it, as soon as
its last client leaves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

import orjson

from decnet.bus import Bus, topics
from decnet.bus.base import BaseSubscription

from . import sse
from .config import WebConfig
from .stream import ERROR, SHUTDOWN, Client, body

log = logging.getLogger("decnet.web.hub")

#: A bus Gap's reason → the ``stream.resync`` reason; others pass as they are.
GAP_REASONS = {"connect": "bus_unavailable"}
_KEEPALIVE_MESSAGE = body(sse.KEEPALIVE)


class Hub:
    """The streams of one topology in this process and their bus subscription."""

    def __init__(self, hubs: "Hubs", topology_id: str) -> None:
        self.hubs = hubs
        self.topology_id = topology_id
        self.pattern = topics.topology_all(topology_id)
        self._prefix = len(self.pattern) - 1  # "topology.{id}." precedes the part TYPES maps
        #: Clients told stream.ready; they get every event.
        self.clients: dict[Client, None] = {}
        #: Clients waiting for the subscription to be live → whether they owe a resync.
        self.waiting: dict[Client, bool] = {}
        self.sub: Optional[BaseSubscription] = None
        self.sent = 0
        self.ignored = 0
        self.malformed = 0
        self.closed = False
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run(), name=f"decnet-web-hub-{topology_id}")
        interval = hubs.config.keepalive
        self._keepalive = loop.call_later(interval, self._tick) if interval else None

    @property
    def live(self) -> bool:
        """The broker has this hub's subscription (as far as the bus knows)."""
        return self.sub is not None and self.sub.active and self.sub.pending_gap is None

    def add(self, client: Client, resync: bool) -> None:
        """A new stream: ready now if the subscription is live, else once it is."""
        if self.live:
            self._ready(client, resync)
        else:
            self.waiting[client] = resync

    def remove(self, client: Client) -> bool:
        """A stream left; True if it was the last one."""
        self.clients.pop(client, None)
        self.waiting.pop(client, None)
        return not self.clients and not self.waiting

    def close(self) -> None:
        """Drop the subscription (the broker gets UNSUB at once)."""
        self.closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.task.cancel()

    def _ready(self, client: Client, resync: Optional[str]) -> None:
        client.push(sse.ready(self.topology_id))
        if resync:
            client.push(sse.resync(resync if isinstance(resync, str) else "last_event_id"))
        self.clients[client] = None

    def _tick(self) -> None:
        if self.closed:
            return
        for client in (*self.clients, *self.waiting):
            client.push(sse.KEEPALIVE, _KEEPALIVE_MESSAGE)
        self._keepalive = asyncio.get_running_loop().call_later(self.hubs.config.keepalive, self._tick)

    async def _run(self) -> None:
        try:
            async with self.hubs.bus.subscribe(self.pattern, maxsize=self.hubs.config.subscription_queue) as sub:
                self.sub = sub
                if sub.pending_gap is None:
                    self._live(None)
                async for item in sub:
                    if item.gap:
                        self._live(item)
                    else:
                        self._event(item.topic, item.raw)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the bus subscription of topology %s failed; ending its streams", self.topology_id)
            self.hubs._forget(self)
            self.closed = True
            if self._keepalive is not None:
                self._keepalive.cancel()
            for client in (*self.clients, *self.waiting):
                client.end(ERROR)

    def _live(self, gap) -> None:
        """The subscription is live (again): the waiting clients get ready; after
        a Gap, everyone gets a resync."""
        if gap is not None:
            frame = sse.resync(GAP_REASONS.get(gap.reason, gap.reason), gap.lost)
            message = body(frame)
            for client in self.clients:
                client.push(frame, message)
        waiting, self.waiting = self.waiting, {}
        for client, resync in waiting.items():
            self._ready(client, "bus_unavailable" if gap is not None else resync)

    def _event(self, topic: str, raw: bytes) -> None:
        event_type = sse.TYPES.get(topic[self._prefix:])
        if event_type is None:
            self.ignored += 1
            return
        try:
            payload, ts = sse.event_json(raw)
        except orjson.JSONDecodeError:
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 1000 == 0:
                log.warning("dropped %d event(s) of topology %s whose payload is not JSON", self.malformed,
                            self.topology_id)
            return
        frame = sse.frame(event_type, ts or sse.now_ts(), payload)
        message = body(frame)
        for client in self.clients:
            client.push(frame, message)
        self.sent += 1


class Hubs:
    """The hubs of one app, by topology id."""

    def __init__(self, bus: Bus, config: WebConfig) -> None:
        self.bus = bus
        self.config = config
        self.hubs: dict[str, Hub] = {}

    def join(self, topology_id: str, client: Client, resync: bool = False) -> Hub:
        """Add a stream to its topology's hub, starting the hub if there is none."""
        hub = self.hubs.get(topology_id)
        if hub is None:
            hub = self.hubs[topology_id] = Hub(self, topology_id)
        hub.add(client, resync)
        return hub

    def leave(self, topology_id: str, client: Client) -> None:
        """A stream ended; the last one of a topology takes its hub with it."""
        hub = self.hubs.get(topology_id)
        if hub is not None and hub.remove(client):
            self._forget(hub)
            hub.close()

    def _forget(self, hub: Hub) -> None:
        if self.hubs.get(hub.topology_id) is hub:
            del self.hubs[hub.topology_id]

    def streams(self) -> int:
        """Open streams, over all topologies."""
        return sum(len(h.clients) + len(h.waiting) for h in self.hubs.values())

    def stats(self) -> dict:
        """Counters per topology, for logs and tests."""
        return {tid: {"clients": len(h.clients), "waiting": len(h.waiting), "live": h.live, "sent": h.sent,
                      "ignored": h.ignored, "malformed": h.malformed} for tid, h in self.hubs.items()}

    def end_all(self, reason: str = SHUTDOWN) -> None:
        """End every stream (the server is stopping); each one's task finishes its response."""
        for hub in list(self.hubs.values()):
            for client in (*hub.clients, *hub.waiting):
                client.end(reason)
