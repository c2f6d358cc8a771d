"""``Bridge``: one host's bus and NATS, joined both ways, with its counters.

Two pumps and a supervisor, all on one event loop:

- export: one Subscription to every export pattern on the local broker
  (``UnixBus(echo=False)``), each event published on NATS as
  ``<prefix>.<topic>`` with its payload bytes as they came;
- import: the NATS subscriptions feed one bounded queue, in the order the
  server sent them; a task publishes each message's bytes on the local bus
  with ``publish_raw``;
- the supervisor keeps a NATS connection (any server of the list, reconnect
  forever; a client nats-py gave up on is replaced) and tells local consumers
  on ``system.bridge.<name>.gap`` when imported events may have been lost.

Nothing here blocks a local publisher: the broker never waits for the bridge
(its queue for us is bounded), and each side's backlog is bounded and sheds
its oldest events, counted.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import deque
from typing import Any, Optional

import orjson

from ..base import Bus
from ..errors import BusError, TopicError
from ..unix_client import UnixBus
from .config import BridgeConfig
from .mapping import ORIGIN, SEQ, Dedupe, Mapping, gap_topic, health_topic, new_epoch

log = logging.getLogger("decnet.bus.bridge")

#: How often one kind of complaint (NATS unreachable, permission denied) is logged at most.
LOG_EVERY = 10.0
#: Seconds between attempts to tell local consumers of lost imports while the local bus is away.
RETELL = 0.5


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Notice:
    """The bridge's own event (heartbeat, gap), queued among the imports so
    that it reaches local consumers after what was queued before it."""

    __slots__ = ("topic", "body")

    def __init__(self, topic: str, body: bytes) -> None:
        self.topic = topic
        self.body = body


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


def _headed_supported() -> bool:
    """Whether nats-py's client has the internals ``_publish_headed`` uses."""
    try:
        from nats.aio.client import Client
    except ImportError:
        return False
    client = Client()
    return all(hasattr(client, name) for name in (
        "_send_command", "_flush_pending", "_flush_queue", "_max_pending_size", "_pending_data_size",
        "_max_payload", "stats", "is_draining_pubs"))


async def _publish_headed(nc, subject: str, header: bytes, payload: bytes) -> None:
    """``nc.publish(subject, payload, headers=...)`` with the header block
    given as bytes. nats-py builds and checks the block anew for every
    message (a regular expression, strip, translate and encode per header:
    about 4 of its 5 µs per publish here); the bridge's headers are the same
    but for the sequence number, so it builds the block once. The checks and
    the buffering below are nats-py's own ``publish``, through its 2.x
    internals (the ``bridge`` extra pins nats-py 2.x; the export pump uses
    ``publish`` where ``_headed_supported`` finds them missing)."""
    from nats import errors

    if nc.is_closed:
        raise errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise errors.ConnectionDrainingError
    size = len(payload)
    if not nc.is_connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
        raise errors.OutboundBufferLimitError  # reconnecting, and the buffer is full
    if size > nc._max_payload:
        raise errors.MaxPayloadError
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += size
    await nc._send_command(b"HPUB %s %d %d\r\n%s%s\r\n" % (subject.encode(), len(header), len(header) + size,
                                                             header, payload))
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def _read_headers_fast(nc) -> None:
    """Let ``nc`` read the bridges' own header block without its general
    parser. nats-py parses every message's headers line by line and tests
    each character of each name for whitespace: about a quarter of an
    import's cost. A block of exactly the shape the export pump writes
    (``Decnet-Origin``, then ``Decnet-Seq``, nothing else) is split here
    into the same two strings; any other block goes to nats-py's parser as
    before. An instance attribute over nats-py 2.x's ``_process_headers``;
    nothing changes where it is missing."""
    general = getattr(nc, "_process_headers", None)
    if general is None:
        return
    start = f"NATS/1.0\r\n{ORIGIN}: ".encode()
    seq = f"{SEQ}: ".encode()
    cut_origin, cut_seq = len(start) - len(b"NATS/1.0\r\n"), len(seq)

    async def process_headers(headers):
        if headers and headers.startswith(start):
            lines = headers.split(b"\r\n")
            if len(lines) == 5 and lines[2].startswith(seq) and not lines[3] and not lines[4]:
                return {ORIGIN: lines[1][cut_origin:].strip().decode("utf-8", "replace"),
                        SEQ: lines[2][cut_seq:].strip().decode("utf-8", "replace")}
        return await general(headers)

    nc._process_headers = process_headers


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


class Bridge:
    """A host's bus joined to NATS as ``config`` says.

    ``await bridge.run(stop)`` runs until ``stop`` is set, then hands over what
    it holds (at most ``config.drain_timeout`` s). ``bus`` replaces the local
    client (tests). The counters are plain attributes; ``health()`` is what
    the heartbeat publishes.
    """

    def __init__(self, config: BridgeConfig, *, bus: Optional[Bus] = None) -> None:
        self.config = config
        self.mapping: Mapping = config.check()
        self.name = self.mapping.name
        self.bus = bus if bus is not None else UnixBus(config.socket, name=f"decnet bus bridge {self.name}", echo=False)
        self.health_topic = health_topic(self.name)
        self.gap_topic = gap_topic(self.name)
        self.nc: Any = None
        #: Local events published on NATS.
        self.exported = 0
        #: NATS messages published on the local bus.
        self.imported = 0
        #: Local events that could not cross (NATS away, its buffer full, the export queue full).
        self.dropped_export = 0
        #: NATS messages that could not cross (the import queue full, the local broker away).
        self.dropped_import = 0
        #: Imports whose subject is not a decnet topic.
        self.invalid = 0
        #: Imports this bridge exported itself (dropped).
        self.looped = 0
        #: Second copies of a message from overlapping import subscriptions (dropped).
        self.duplicates = 0
        #: Publishes and subscriptions the NATS server refused (permissions).
        self.denied = 0
        #: NATS connections made again after one was lost.
        self.reconnects = 0
        #: Other errors the NATS client reported.
        self.nats_errors = 0
        self.started = time.monotonic()
        self._epoch = new_epoch()
        self._seq = 0
        self._dedupe = Dedupe() if self.mapping.overlapping else None
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._wake: Optional[asyncio.Future] = None
        self._lost = 0  # imports lost since the last gap notice
        self._lost_reason = "overflow"  # why the first of them was lost
        self._export_sub = None
        self._nats_live = False
        self._stopping = False
        self._logged: dict[str, float] = {}

    # -- state

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

    @property
    def live(self) -> bool:
        """Both sides subscribed: an event published from now on crosses."""
        sub = self._export_sub
        local = not self.mapping.exports or (
            sub is not None and sub.active and sub.pending_gap is None and getattr(self.bus, "connected", True))
        return local and self.connected and (self._nats_live or not self.mapping.imports)

    def health(self) -> dict:
        """The heartbeat's payload."""
        sub = self._export_sub
        shed = sub.dropped if sub is not None else 0
        return {
            "v": 1,
            "ts": _now(),
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
            "queued_import": len(self._queue),
            "prefix": self.mapping.prefix,
            "exports": list(self.mapping.exports),
            "imports": list(self.mapping.imports),
        }

    # -- the run

    async def run(self, stop: asyncio.Event, ready=None) -> None:
        """Bridge until ``stop`` is set, then drain. ``ready`` (a callable) is
        called once both pumps and the supervisor are started."""
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        tasks = [loop.create_task(self._import_pump(), name="bridge-import")]
        if self.mapping.exports:
            self._export_sub = self.bus.subscribe(*self.mapping.exports, maxsize=self.config.export_queue)
            await self._export_sub.__aenter__()
            tasks.append(loop.create_task(self._export_pump(), name="bridge-export"))
        supervisor = loop.create_task(self._supervise(), name="bridge-nats")
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
            self._stopping = True
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
            nc, self.nc = self.nc, None
            if nc is not None and not nc.is_closed:
                await nc.close()
            await self.bus.close()
            log.info("bridge %s stopped: exported %d, imported %d, dropped %d/%d", self.name, self.exported,
                     self.imported, self.dropped_export, self.dropped_import)

    async def _drain(self, tasks: list, supervisor: asyncio.Task) -> None:
        """What the bridge holds crosses before it goes: the local events
        queued for export, then NATS's outgoing buffer, then the imports queued
        for the local broker."""
        if self._export_sub is not None:
            await self._export_sub.close()  # the export pump ends once its queue is empty
            await asyncio.gather(*tasks[1:], return_exceptions=True)
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        nc = self.nc
        if nc is not None and nc.is_connected:
            try:
                await nc.drain()
            except Exception as error:  # a NATS client that cannot drain is closed below all the same
                log.debug("bridge %s: NATS drain: %s", self.name, error)
        self._kick()
        while self._queue and not tasks[0].done():
            await asyncio.sleep(0.01)
        try:
            await self.bus.flush(1.0)
        except (BusError, asyncio.TimeoutError):
            pass

    # -- export: local → NATS

    async def _export_pump(self) -> None:
        mapping = self.mapping
        subject, exported = mapping.subject, mapping.exported
        headers = {ORIGIN: self.name, SEQ: ""}
        prefix = self._epoch + "."
        # The header block as NATS writes it, all but the sequence number and the blank line.
        head = f"NATS/1.0\r\n{ORIGIN}: {self.name}\r\n{SEQ}: {prefix}".encode()
        headed = _headed_supported()
        async for evt in self._export_sub:
            if evt.gap:
                self._local_gap(evt)
                continue
            topic = evt.topic
            if not exported(topic):
                continue
            nc = self.nc
            if nc is None or nc.is_closed or not (nc.is_connected or nc.is_reconnecting):
                self.dropped_export += 1
                continue
            self._seq += 1
            try:
                if headed:
                    await _publish_headed(nc, subject(topic), b"%s%d\r\n\r\n" % (head, self._seq), evt.raw)
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
            self._kick()

    # -- import: NATS → local

    def _on_message(self, msg) -> None:
        """One NATS message, in the server's order: drop it here or queue it for the local bus."""
        headers = msg.headers
        origin = headers.get(ORIGIN) if headers else None
        if origin == self.name:
            self.looped += 1
            return
        topic = self.mapping.topic(msg.subject)
        if topic is None:
            self.invalid += 1
            self._complain("invalid", "bridge %s: dropped an import on %r: not a decnet topic", self.name, msg.subject)
            return
        if self._dedupe is not None and origin is not None and self._dedupe.duplicate(origin, headers.get(SEQ)):
            self.duplicates += 1
            return
        self._enqueue((topic, msg.data), len(msg.data))

    def _enqueue(self, item, size: int) -> None:
        queue = self._queue
        queue.append(item)
        self._queued_bytes += size
        config = self.config
        while len(queue) > config.import_queue or self._queued_bytes > config.import_queue_bytes:
            # Shed the oldest import; the bridge's own notices are few and never shed.
            for i, old in enumerate(queue):
                if type(old) is tuple:
                    break
            else:
                break
            del queue[i]
            self._queued_bytes -= len(old[1])
            self.dropped_import += 1
            self._note_lost("overflow")
        self._kick()

    def _note_lost(self, reason: str) -> None:
        if not self._lost:
            self._lost_reason = reason
        self._lost += 1

    def _kick(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _import_pump(self) -> None:
        loop = asyncio.get_running_loop()
        queue, bus = self._queue, self.bus
        counted = hasattr(bus, "dropped")
        while True:
            if self._lost:
                await self._tell_lost()
            if not queue:
                self._wake = loop.create_future()
                # While a loss is still untold (the local bus is away), try again now and then.
                timeout = RETELL if self._lost else None
                try:
                    await asyncio.wait_for(self._wake, timeout)
                except asyncio.TimeoutError:
                    pass
                continue
            item = queue.popleft()
            if type(item) is tuple:
                topic, data = item
                self._queued_bytes -= len(data)
                before = bus.dropped if counted else 0
                try:
                    await bus.publish_raw(topic, data)
                except (TopicError, BusError) as error:  # over the local broker's limit, or the bus closed
                    self.dropped_import += 1
                    self._note_lost("local")
                    self._complain("local", "bridge %s: could not publish %s locally: %s", self.name, topic, error)
                    continue
                if counted and bus.dropped != before:  # the local broker is away or stuck
                    self.dropped_import += 1
                    self._note_lost("local")
                else:
                    self.imported += 1
            else:
                topic, body = item.topic, item.body
                await self._publish_local(topic, body)
                if self.mapping.exports_topic(topic):
                    await self._publish_own(topic, body)

    async def _tell_lost(self) -> None:
        """Publish the gap notice for the imports lost so far; if the local bus
        drops it too, it stays owed."""
        lost, reason = self._lost, self._lost_reason
        self._lost = 0
        before = getattr(self.bus, "dropped", 0)
        published = await self._publish_local(self.gap_topic, self._gap_body(reason, lost))
        if not published or getattr(self.bus, "dropped", 0) != before:
            self._lost += lost
            self._lost_reason = reason
            return
        self._complain("lost", "bridge %s: %d imports were lost (%s)", self.name, lost, reason)
        if self.mapping.exports_topic(self.gap_topic):
            await self._publish_own(self.gap_topic, self._gap_body(reason, lost))

    # -- the bridge's own events

    def _gap_body(self, reason: str, lost: Optional[int]) -> bytes:
        return orjson.dumps({"v": 1, "ts": _now(), "name": self.name, "reason": reason, "lost": lost,
                             "imports": list(self.mapping.imports)})

    def _notice_gap(self, reason: str, lost: Optional[int] = None) -> None:
        """Tell local consumers, after what is already queued, that imported
        events may have been lost (``system.bridge.<name>.gap``)."""
        if not self.mapping.imports and not self.mapping.exports_topic(self.gap_topic):
            return
        self._enqueue(_Notice(self.gap_topic, self._gap_body(reason, lost)), 0)

    async def _publish_local(self, topic: str, body: bytes) -> bool:
        try:
            await self.bus.publish_raw(topic, body)
        except (TopicError, BusError) as error:
            self._complain("local", "bridge %s: could not publish %s locally: %s", self.name, topic, error)
            return False
        return True

    async def _publish_own(self, topic: str, body: bytes) -> None:
        """The bridge's own event, exported like a local one that an --export pattern matches."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return
        self._seq += 1
        try:
            await nc.publish(self.mapping.subject(topic), body,
                             headers={ORIGIN: self.name, SEQ: f"{self._epoch}.{self._seq}"})
        except Exception as error:
            self._complain("export", "bridge %s: could not export %s: %s", self.name, topic, type(error).__name__)

    async def _heartbeat(self) -> None:
        interval = self.config.health_interval
        while True:
            await asyncio.sleep(interval)
            self._enqueue(_Notice(self.health_topic, orjson.dumps(self.health())), 0)

    # -- the NATS side

    async def _supervise(self) -> None:
        """Keep a NATS client: connect (trying every server until one answers),
        subscribe, and start again with a new client if nats-py closes one."""
        from nats.aio.client import Client

        config = self.config
        tls = config.ssl_context()
        first = True
        while True:
            nc = Client()
            if self.mapping.imports:
                _read_headers_fast(nc)
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
            self._nats_live = True
            if not first:
                self.reconnects += 1
            log.info("bridge %s: connected to NATS at %s", self.name, self.server)
            self._notice_gap("connect" if first else "reconnect")
            first = False
            await closed
            self._nats_live = False
            log.warning("bridge %s: the NATS client closed (%s); starting a new one", self.name, nc.last_error)
            await asyncio.sleep(config.reconnect_wait)

    async def _on_error(self, error: Exception) -> None:
        text = str(error)
        if "permissions violation" in text:
            self.denied += 1
            self._complain("denied", "bridge %s: the NATS server refused: %s", self.name, text)
            return
        self.nats_errors += 1
        self._complain("nats", "bridge %s: NATS: %s", self.name, text or type(error).__name__)

    async def _on_disconnected(self) -> None:
        if not self._stopping:
            self._nats_live = False
            log.warning("bridge %s: lost the NATS connection; reconnecting", self.name)

    async def _on_reconnected(self) -> None:
        # nats-py calls this once the server has every subscription again, so
        # a consumer that resyncs on the gap misses nothing from here on.
        self.reconnects += 1
        self._nats_live = True
        log.info("bridge %s: reconnected to NATS at %s", self.name, self.server)
        self._notice_gap("reconnect")

    def _complain(self, kind: str, message: str, *args) -> None:
        """Log ``message`` unless one of its ``kind`` was logged in the last LOG_EVERY s."""
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self._logged[kind] = now
            log.warning(message, *args)
